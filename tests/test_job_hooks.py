"""A job's own webhooks, in process: which trigger an outcome fires, the hooks of a spec
(CLI, API, import files, Rundeck's YAML) and their validation, what a member puts on an
execution's events, and the notify worker's deliveries to them (real Redis, a real HTTP
receiver)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.codec import decode_as
from schemas.events import trigger_of
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import FailedNotification
from schemas.settings import Settings
from tests.cluster import wait_for
from tests.notify_receiver import Receiver, SilentReceiver
from tests.test_notify_live import SECRET
from workers.cli.jobs_options import spec_fields_of_options
from workers.jobs import SpecError, merged_spec, parse_import, parse_spec
from workers.jobs.hooks import hook_urls, shown_hooks
from workers.node.runner import Ended, record_outcomes
from workers.node.tell import ended_event, started_event
from workers.notify.events import execution_kind
from workers.notify.hooks import HookDeliveries, HookFanout, delivery_id, hook_url_of
from workers.notify.sender import EventSender
from workers.store import (
    Finish,
    JobRow,
    StartedExecution,
    Store,
    create_job,
    finish_executions,
    insert_execution,
    start_executions,
)

HOOK = "https://hooks.example.com/qwc?token=s3cret"
KEYS = Keys()


@pytest.mark.parametrize(
    ("status", "retrying", "trigger"),
    [
        ("running", False, "onstart"),
        ("succeeded", False, "onsuccess"),
        ("failed", False, "onfailure"),
        ("failed", True, "onretryablefailure"),
        ("timedout", False, "ontimeout"),
        ("timedout", True, "ontimeout"),
        ("aborted", False, None),
        ("incomplete", False, None),
    ],
)
def test_an_outcome_fires_its_trigger(status: str, retrying: bool, trigger: str | None) -> None:
    kind = execution_kind(status, retrying=retrying)
    assert (trigger_of(kind) if kind else None) == trigger


def test_hooks_of_a_spec_are_checked_and_kept_per_trigger() -> None:
    spec = parse_spec(
        {"name": "j", "command": "true", "notify": {"onfailure": [HOOK, HOOK, " "],
                                                    "ontimeout": "http://127.0.0.1:9/t"}}
    )  # fmt: skip
    assert spec.notify.columns() == {"onfailure": [HOOK], "ontimeout": ["http://127.0.0.1:9/t"]}
    assert hook_urls(spec.notify.columns(), "execution.failed") == (HOOK,)
    assert hook_urls(spec.notify.columns(), "execution.succeeded") == ()
    assert shown_hooks(spec.notify.columns())["onfailure"] == ["https://hooks.example.com/…"]
    assert parse_spec({"name": "j", "command": "true", "notify": None}).notify.columns() == {}


@pytest.mark.parametrize(
    ("notify", "problem"),
    [
        ({"onfailure": ["ftp://h/x"]}, "field 'notify.onfailure': 'ftp://h/x' is not an http"),
        ({"onfailure": "not a url"}, "field 'notify.onfailure': 'not a url' is not an http"),
        ({"onfailure": ["http:///nohost"]}, "(no host)"),
        ({"onfailure": [f"http://h/{i}" for i in range(11)]}, "11 URLs, at most 10"),
        ({"onfail": [HOOK]}, "field 'notify.onfail': Extra inputs are not permitted"),
        ({"onstart": ["http://h/" + "x" * 2048]}, "at most 2048"),
        ({"onstart": [3]}, "3 is not a URL"),
    ],
)
def test_a_bad_hook_is_refused_naming_its_trigger(notify: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"name": "j", "command": "true", "notify": notify})
    assert problem in "\n".join(caught.value.problems)


def _job(**notify: tuple[str, ...]) -> JobRow:
    return JobRow(
        id="j1", project="ops", group_name="", name="j", command=("true",), schedule=None,
        enabled=True, owner_uuid="o", owner_epoch=1, retry_count=0, retry_delay_s=0.0,
        next_fire_ms=None, last_fire_ms=None, modified_by="o", modified_ms=1, created_ms=1,
        notify=notify,
    )  # fmt: skip


def test_an_edit_replaces_the_triggers_it_names_and_null_clears_them_all() -> None:
    job = _job(onfailure=(HOOK,), onstart=("http://a/",))
    edited = merged_spec(job, {"notify": {"onfailure": ["http://b/"], "onstart": None}})
    assert edited.notify.columns() == {"onfailure": ["http://b/"]}
    assert merged_spec(job, {"description": "x"}).notify.columns() == dict(
        onstart=["http://a/"], onfailure=[HOOK]
    )
    assert merged_spec(job, {"notify": None}).notify.columns() == {}


def test_cli_options_make_the_hooks_of_the_triggers_given() -> None:
    options = {f"on_{t}": () for t in ("start", "success", "retryable_failure", "timeout")}
    fields = spec_fields_of_options({**options, "on_failure": (HOOK, "http://b/")})
    assert fields == {"notify": {"onfailure": [HOOK, "http://b/"]}}
    assert spec_fields_of_options({"on_failure": ("",)}) == {"notify": {"onfailure": [""]}}


def test_this_projects_import_file_and_rundecks_yaml_carry_hooks() -> None:
    own = parse_import([{"name": "a", "command": "true", "notify": {"onstart": HOOK}}], "f")
    assert own.specs[0].notify.onstart == (HOOK,)
    job = {
        "name": "b",
        "sequence": {"commands": [{"exec": "false"}]},
        "notification": {
            "onfailure": {"urls": f"{HOOK}, http://b/", "recipients": "ops@example.com"},
            "onsuccess": {"webhook": {"urls": ["http://c/"], "httpMethod": "post"}},
            "onretryablefailure": {"urls": "http://d/?id=${execution.id}"},
            "onavgduration": {"urls": "http://e/"},
        },
    }
    imported = parse_import([job], "r.yaml", project="p")
    notify = imported.specs[0].notify
    assert (notify.onfailure, notify.onsuccess) == ((HOOK, "http://b/"), ("http://c/",))
    assert notify.onretryablefailure == ()
    said = "\n".join(imported.warnings)
    for lost in (
        "'notification.onfailure.recipients' not imported",
        "'notification.onsuccess.webhook.httpMethod' not imported",
        "property tokens are not expanded",
        "'notification.onavgduration' not imported",
    ):
        assert lost in said, said
    with pytest.raises(SpecError, match=r"notify\.onfailure"):
        parse_import([{**job, "notification": {"onfailure": {"urls": "mailto:x"}}}], "r.yaml")


def _started(**notify: tuple[str, ...]) -> StartedExecution:
    return StartedExecution(
        id="e1", job_id="j1", member_uuid="m1", attempt=1, retry_of=None, trigger="schedule",
        fire_ms=1000, started_ms=1040, command=("false",), retry_count=1, retry_delay_s=0.0,
        project="ops", group_name="nightly", name="backup", notify=notify,
    )  # fmt: skip


def test_a_members_events_carry_the_jobs_hooks_for_their_trigger() -> None:
    e = _started(onstart=("http://s/",), onfailure=("http://f/",))
    started = started_event(e, member_name="n1")
    assert started is not None and started.hook_urls == ("http://s/",)
    assert started.data["execution"]["lateness_ms"] == 40  # type: ignore[index,call-overload]
    ended = Ended(e, "failed", "x" * 5000 + "tail", 3)
    retried = ended_event(ended, member_name="n1", retrying=True, ended_ms=2000)
    assert retried is not None and retried.kind == "execution.retryable_failure"
    assert retried.hook_urls == ()  # no onretryablefailure hook
    final = ended_event(ended, member_name="n1", retrying=False, ended_ms=2000)
    assert final is not None and final.hook_urls == ("http://f/",)
    execution: Any = final.data["execution"]
    assert (execution["exit_code"], execution["ended_ms"]) == (3, 2000)
    assert execution["output_tail"].endswith("tail") and len(execution["output_tail"]) == 4096
    assert ended_event(Ended(e, None), member_name="n1", retrying=False, ended_ms=1) is None


def test_the_sender_drops_events_when_redis_is_down_without_blocking() -> None:
    down = redis.Redis(unix_socket_path="/nonexistent/redis.sock")
    sender = EventSender(down, KEYS)
    event = started_event(_started(), member_name="n1")
    assert event is not None
    sender.send(event)  # returns at once
    sender.close(timeout_s=60)  # its thread gives up on Redis after the client's retries
    assert sender.dropped == 1


@pytest.fixture
def hook() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def _settings(redis_url: str, tmp_path: Path) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "home_dir": tmp_path,
        "notification_secret": SECRET,
        "notification_timeout_s": 0.5,
        "notification_retry_initial_s": 0.05,
        "notification_retry_max_s": 0.1,
        "notification_retry_horizon_s": 0.3,
    }
    return Settings(**values)


def _deliver_all(r: redis.Redis, fanout: HookFanout, deliveries: HookDeliveries) -> None:
    """Steps until no delivery is left (each attempt waits on its own thread)."""
    fanout.block_ms = 10
    fanout.step()
    done = threading.Event()
    for _ in range(200):
        deliveries.step()
        deliveries.wake.wait(0.05)
        if r.zcard(KEYS.notify_hooks_due) == 0:
            done.set()
            break
    assert done.is_set(), r.zrange(KEYS.notify_hooks_due, 0, -1)


def test_hooks_are_delivered_once_each_and_a_failing_one_ends_in_the_failed_list(
    r: redis.Redis, redis_url: str, hook: Receiver, tmp_path: Path
) -> None:
    failing = Receiver().start()
    failing.statuses.extend([500] * 100)
    event = ended_event(
        Ended(_started(onfailure=(hook.url, failing.url)), "failed", "boom\n", 3),
        member_name="n1", retrying=False, ended_ms=2000,
    )  # fmt: skip
    assert event is not None
    sender = EventSender(r, KEYS)
    sender.send(event)
    sender.send(event)  # the same event again (a redelivery): one delivery per URL
    sender.close()
    fanout = HookFanout(r, KEYS, consumer="c1")
    deliveries = HookDeliveries(r, _settings(redis_url, tmp_path))
    try:
        _deliver_all(r, fanout, deliveries)
    finally:
        deliveries.close()
        failing.stop()
    assert [g.event["id"] for g in hook.requests] == [event.id]  # once
    assert hook.requests[0].signed_by(SECRET) and hook.requests[0].attempt == 1
    assert hook.requests[0].event["data"]["execution"]["output_tail"] == "boom\n"
    assert len(failing.requests) >= 2  # retried, then given up
    (failed_raw,) = r.xrange(KEYS.notifications_failed)
    failed = decode_as(failed_raw[1][MESSAGE_FIELD], FailedNotification)
    assert failed.event_id == event.id and failed.receiver.startswith("job:onfailure:http://")
    assert failed.status == 500 and failed.attempts >= 2
    assert r.keys(KEYS.notify_hook("*")) == []  # nothing left behind
    assert delivery_id(event.id, hook.url) != delivery_id(event.id, failing.url)
    # `qwc notifications retry` finds the URL among the job's hooks as they are now
    now = {"onfailure": [hook.url, failing.url]}
    assert hook_url_of(failed.receiver, now) == failing.url
    assert hook_url_of(failed.receiver, {"onfailure": [hook.url]}) is None
    assert hook_url_of("ops", now) is None


def test_only_the_outcomes_written_are_told(store: Store) -> None:
    job = create_job(
        store, project="ops", group_name="", name="j", command=["false"], schedule=None,
        modified_by="m1", now_ms=1, notify={"onfailure": ["http://h/"]},
    )  # fmt: skip
    ids = [insert_execution(store, job_id=job.id, member_uuid="m1", trigger="manual",
                            fire_ms=1, now_ms=1) for _ in range(2)]  # fmt: skip
    first, second = start_executions(store, ids, member_uuid="m1", now_ms=2)
    assert first.notify == {"onfailure": ["http://h/"]} and first.name == "j"
    finish_executions(store, [Finish(second.id, "aborted", None, None, "by hand")], now_ms=3)
    done = record_outcomes(store, [Ended(first, "failed"), Ended(second, "failed")], now_ms=4)
    assert [(d.ended.execution.id, d.retrying) for d in done] == [(first.id, False)]


def test_a_silent_hook_delays_no_other_hook(
    r: redis.Redis, redis_url: str, hook: Receiver, tmp_path: Path
) -> None:
    silent = SilentReceiver()
    settings = _settings(redis_url, tmp_path).model_copy(update={"notification_timeout_s": 5.0})
    sender = EventSender(r, KEYS)
    for n in range(3):  # three failed runs of jobs hooked to the silent URL, then to ours
        e = dataclasses.replace(_started(onfailure=(silent.url, hook.url)), id=f"e{n}")
        event = ended_event(Ended(e, "failed"), member_name="n1", retrying=False, ended_ms=9)
        assert event is not None
        sender.send(event)
    sender.close()
    fanout = HookFanout(r, KEYS, consumer="c1")
    fanout.block_ms = 10
    fanout.step()
    deliveries = HookDeliveries(r, settings)
    started = time.monotonic()
    try:
        wait_for(lambda: deliveries.step() >= 0 and len(hook.requests) == 3, timeout_s=4,
                 what="our 3 deliveries")  # fmt: skip
        assert time.monotonic() - started < 4  # not behind the silent one's 5 s timeouts
        assert len(silent.accepted) == 1  # one attempt at a time to the silent URL
    finally:
        silent.stop()
        deliveries.close()
