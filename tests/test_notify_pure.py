"""Notifications, the pure parts: the settings of receivers (file, environment, errors naming
key, file and line), event patterns, the events' ids and payloads, the body and its
signature, the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.errors import ConfigError, ConfigProblem
from schemas.events import EVENT_FAMILIES, EventType, check_pattern, event_matches
from schemas.messages import Event, MembershipChange, MemberState
from schemas.settings import Settings, load_settings, origins
from schemas.settings_webhooks import Webhook, redact_webhook_url
from workers.notify.events import (
    OUTPUT_TAIL_MAX_CHARS,
    decided_event,
    execution_event,
    execution_kind,
    held_event,
    member_event,
    released_event,
)
from workers.notify.payload import SCHEMA, body_of, headers_for, sign, verify
from workers.notify.samples import sample_event
from workers.notify.schedule import (
    Failures,
    GiveUp,
    RetryPolicy,
    Verdict,
    after_failure,
    attempt_offsets_ms,
    retry_delay_ms,
    verdict,
)
from workers.store import ExecutionRow, RecoveryRow, TakeoverRow

W = "qwcontrol.notifications.webhooks."
U1 = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
U2 = "0b7f7c86-2b8d-4d4b-9d0a-7e6f3a8f9c11"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qwc.properties"
    path.write_text(text)
    return path


def problems(path: Path | None, environ: dict[str, str]) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_settings(path if path is not None else "/dev/null", environ=environ)
    return info.value.problems


# --- settings -----------------------------------------------------------------------------


def test_receivers_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{W}ops.url = https://hooks.example.com/services/T0/B0/token\n"
        f"{W}ops.events = member.*, takeover.committed,member.*\n"
        f"{W}audit.url = http://audit.local:8080/qwc\n"
        f"{W}audit.events = *\n"
        "qwcontrol.notifications.secret = 0123456789abcdef\n"
        "qwcontrol.notifications.timeout = 0.5\n"
        "qwcontrol.notifications.retry.horizon = 0\n",
    )
    env = {
        "QWC_NOTIFICATIONS_WEBHOOKS_AUDIT_EVENTS": "recovery.*",  # the environment wins per key
        "QWC_NOTIFICATIONS_WEBHOOKS_PAGER_URL": "https://pager.example/x",
        "QWC_NOTIFICATIONS_WEBHOOKS_PAGER_EVENTS": "member.dead",
        "QWC_NOTIFICATIONS_RETRY_MAX": "60",
    }
    s = load_settings(path, environ=env)
    assert s.notification_webhooks == (
        Webhook(name="audit", url="http://audit.local:8080/qwc", events=("recovery.*",)),
        Webhook(
            name="ops",
            url="https://hooks.example.com/services/T0/B0/token",
            events=("member.*", "takeover.committed"),
        ),
        Webhook(name="pager", url="https://pager.example/x", events=("member.dead",)),
    )
    assert s.notification_secret is not None
    assert s.notification_secret.get_secret_value() == "0123456789abcdef"
    assert (s.notification_timeout_s, s.notification_retry_horizon_s) == (0.5, 0)
    assert (s.notification_retry_initial_s, s.notification_retry_max_s) == (1, 60)
    assert origins(s)["qwcontrol.notifications.webhooks"].source == "environment"
    assert str(s.notification_webhooks[1]) == (
        "ops=https://hooks.example.com/… [member.* takeover.committed]"
    )


def test_receivers_from_the_file_alone_name_its_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"# c\n{W}ops.events=*\n{W}ops.url=http://h/\n")
    s = load_settings(path, environ={})
    origin = origins(s)["qwcontrol.notifications.webhooks"]
    assert (origin.source, origin.file, origin.line) == ("file", str(path), 2)


@pytest.mark.parametrize(
    ("line", "key", "allowed"),
    [
        (f"{W}ops.url=ftp://h/x", f"{W}ops.url", "(scheme 'ftp')"),
        (f"{W}ops.url=https:///nohost", f"{W}ops.url", "(no host)"),
        (f"{W}ops.url=http://h:99999/", f"{W}ops.url", "out of range"),
        (f"{W}ops.events=member.dead,takover.*", f"{W}ops.events", "`takover.*` is not an event"),
        (f"{W}ops.events=notification.test", f"{W}ops.events", "is not an event type"),
        (f"{W}ops.events= , ", f"{W}ops.events", "empty"),
        (f"{W}Ops.url=http://h/", f"{W}Ops.url", "lower-case letters, digits and _"),
        (f"{W}my-hook.url=http://h/", f"{W}my-hook.url", "lower-case letters"),
        (f"{W}ops.uri=http://h/", f"{W}ops.uri", "did you mean `" + W + "ops.url`?"),
        (f"{W}ops.evnts=*", f"{W}ops.evnts", "did you mean `" + W + "ops.events`?"),
        (f"{W}url=http://h/", f"{W}url", "<name>.url or .events"),
        ("qwcontrol.notifications.webhooks=http://h/", W.rstrip("."), "<name>.url and .events"),
        ("qwcontrol.notifications.secrett=x", "qwcontrol.notifications.secrett", "did you mean"),
        ("qwcontrol.notifications.secret=short", "qwcontrol.notifications.secret", "at least 16"),
        ("qwcontrol.notifications.timeout=0", "qwcontrol.notifications.timeout", "0.01 to 300"),
        ("qwcontrol.notifications.retry.max=-1", "qwcontrol.notifications.retry.max", "0.01"),
    ],
)
def test_a_bad_key_names_itself_its_file_and_line(
    tmp_path: Path, line: str, key: str, allowed: str
) -> None:
    complete = {f"{W}ops.url=http://h/", f"{W}ops.events=*"}
    others = [k for k in sorted(complete) if k.split("=")[0] != line.split("=")[0]]
    if not line.startswith(W + "ops."):
        others = []
    path = write(tmp_path, "# notifications\n" + line + "\n" + "\n".join(others) + "\n")
    (problem,) = problems(path, {})
    assert (problem.key, problem.source, problem.line) == (key, str(path), 2)
    assert allowed in problem.allowed, problem.allowed


def test_a_receiver_needs_both_keys_and_every_problem_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path, f"{W}a.url=http://h/\n{W}b.events=takover.*\n")
    found = problems(path, {})
    assert [(p.key, p.line) for p in found] == [
        (f"{W}a.url", 1),
        (f"{W}b.events", 2),
        (f"{W}b.events", 2),
    ]
    assert f"needs {W}a.events" in found[0].allowed
    assert f"needs {W}b.url" in found[1].allowed
    assert "takover" in found[2].allowed


def test_environment_receivers_and_their_errors_name_the_variable() -> None:
    env = {
        "QWC_NOTIFICATIONS_WEBHOOKS_OPS_URL": "gopher://h/",
        "QWC_NOTIFICATIONS_WEBHOOKS_OPS_EVENTS": "*",
        "QWC_NOTIFICATIONS_WEBHOOKS_OPS_URI": "http://h/",
        "QWC_NOTIFICATIONS_SECRT": "x",
    }
    found = {p.key: p for p in problems(None, env)}
    assert found[f"{W}ops.url"].source == "environment (QWC_NOTIFICATIONS_WEBHOOKS_OPS_URL)"
    assert (
        "QWC_NOTIFICATIONS_WEBHOOKS_<NAME>_URL"
        in found["QWC_NOTIFICATIONS_WEBHOOKS_OPS_URI"].allowed
    )
    assert "QWC_NOTIFICATIONS_SECRET" in found["QWC_NOTIFICATIONS_SECRT"].allowed


def test_a_url_with_a_token_is_never_shown(tmp_path: Path) -> None:
    secret_url = "https://user:pw@hooks.example.com:8443/services/T0/B0/XYZ?token=abc"
    assert redact_webhook_url(secret_url) == "https://hooks.example.com:8443/…"
    assert redact_webhook_url("http://[::1]:9/") == "http://[::1]:9/"
    path = write(tmp_path, f"{W}ops.url={secret_url}\n")  # no .events: a problem shows the URL
    (problem,) = problems(path, {})
    assert problem.value == "https://hooks.example.com:8443/…"
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "qwcontrol.notifications.secret=tooshort\n"), environ={})
    assert "tooshort" not in str(info.value)


def test_receivers_in_code_are_checked() -> None:
    with pytest.raises(ValidationError, match="given twice"):
        Settings(notification_webhooks=(Webhook(name="a", url="http://h/", events="*"),) * 2)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="scheme"):
        Webhook(name="a", url="file:///etc/passwd", events="*")  # type: ignore[arg-type]


# --- patterns and events ------------------------------------------------------------------


def test_patterns() -> None:
    assert {"member", "takeover", "recovery", "execution"} == EVENT_FAMILIES
    assert [check_pattern(p) for p in (" * ", "member.*", "takeover.committed")] == [
        "*",
        "member.*",
        "takeover.committed",
    ]
    for bad in ("member", "member.", "*.dead", "members.*", "notification.*", ""):
        with pytest.raises(ValueError, match="not an event type"):
            check_pattern(bad)
    assert event_matches(["*"], "execution.failed")
    assert event_matches(["member.*"], "member.dead")
    assert not event_matches(["member.*"], "takeover.committed")
    assert event_matches(["takeover.held", "recovery.*"], "recovery.committed")
    assert not event_matches(["takeover.held"], "takeover.committed")
    assert not event_matches([], "member.dead")


def change(from_state: MemberState | None, to_state: MemberState) -> MembershipChange:
    return MembershipChange(
        uuid=U1,
        name="node-1",
        from_state=from_state,
        to_state=to_state,
        at_ms=2000,
        last_seen_ms=1000,
        reason="silence",
    )


def test_member_events() -> None:
    dead = member_event(change(MemberState.INACTIVE, MemberState.DEAD))
    assert dead is not None
    assert (dead.id, dead.kind, dead.at_ms) == (f"member.dead:{U1}:2000", "member.dead", 2000)
    assert dead.data == {
        "member": {"uuid": U1, "name": "node-1"},
        "from_state": "inactive",
        "to_state": "dead",
        "last_seen_ms": 1000,
        "reason": "silence",
    }
    assert member_event(change(MemberState.DEAD, MemberState.ACTIVE)).kind == "member.active"  # type: ignore[union-attr]
    assert member_event(change(None, MemberState.ACTIVE)) is None  # a newcomer: not "again"
    assert member_event(change(None, MemberState.DEAD)).kind == "member.dead"  # type: ignore[union-attr]


def takeover_row(outcome: str | None, decided_ms: int | None = 9000) -> TakeoverRow:
    return TakeoverRow(
        id=1,
        proposal_id="p1",
        dead_uuid=U1,
        policy="any",
        proposed_ms=7000,
        due_ms=8000,
        decided_ms=decided_ms,
        outcome=outcome,
        jobs_moved=5,
        destinations={U2: 3, "u3": 2},
        detail="",
    )


def test_decided_events_come_from_the_audit_row() -> None:
    names = {U1: "node-1", U2: "node-2"}
    committed = decided_event("takeover", takeover_row("committed"), names)
    assert committed is not None
    assert (committed.id, committed.kind, committed.at_ms) == (
        "takeover.committed:p1",
        "takeover.committed",
        9000,
    )
    assert committed.data["destinations"] == [
        {"uuid": U2, "name": "node-2", "jobs": 3},
        {"uuid": "u3", "name": "", "jobs": 2},
    ]
    assert committed.data["jobs_moved"] == 5 and committed.data["member"]["name"] == "node-1"  # type: ignore[index,call-overload]
    cancelled = decided_event("takeover", takeover_row("cancelled"), {})
    assert cancelled is not None and cancelled.id == "takeover.cancelled:p1"
    for outcome in (None, "skipped", "no_destination", "held", "manual"):
        assert decided_event("takeover", takeover_row(outcome), names) is None
    recovery = RecoveryRow(
        id=1,
        proposal_id="r1",
        dead_uuid=U1,
        policy="any",
        proposed_ms=1,
        due_ms=2,
        decided_ms=3,
        outcome="committed",
        executions_marked=1,
        retries=({"execution": "e1", "retry_execution": "e2", "attempt": 2},),
        detail="1 marked",
    )
    event = decided_event("recovery", recovery, {})
    assert event is not None and event.id == "recovery.committed:r1"
    assert event.data["executions_marked"] == 1 and event.data["retries"][0]["attempt"] == 2  # type: ignore[index,call-overload]


def test_held_and_released_events() -> None:
    held = held_event("recovery", proposal_id="p", dead_uuid=U1, reason="3 of 4", at_ms=5)
    assert (held.id, held.kind, held.data["reason"]) == (
        "recovery.held:p",
        "recovery.held",
        "3 of 4",
    )
    released = released_event(77, {"p2": "x", "p1": "y"})
    assert (released.id, released.data) == (
        "takeover.released:77",
        {"released_ms": 77, "held": 2, "proposals": ["p1", "p2"]},
    )


def execution(status: str, output: str | None = "ok\n") -> ExecutionRow:
    return ExecutionRow(
        id="e1",
        job_id="j1",
        member_uuid=U1,
        status=status,
        attempt=2,
        retry_of="e0",
        trigger="retry",
        fire_ms=100,
        owner_epoch=None,
        created_ms=90,
        started_ms=110,
        ended_ms=None if status == "running" else 150,
        exit_code={"succeeded": 0, "failed": 3}.get(status),
        output=output,
        rq_job_id=None,
        queued_ms=None,
        reason="timeout 5 s" if status == "timedout" else None,
    )


def test_execution_events() -> None:
    assert execution_kind("running", retrying=False) is EventType.EXECUTION_STARTED
    assert execution_kind("succeeded", retrying=True) is EventType.EXECUTION_SUCCEEDED
    assert execution_kind("failed", retrying=False) is EventType.EXECUTION_FAILED
    assert execution_kind("failed", retrying=True) is EventType.EXECUTION_RETRYABLE_FAILURE
    assert execution_kind("timedout", retrying=False) is EventType.EXECUTION_TIMED_OUT
    for quiet in ("scheduled", "aborted", "incomplete"):
        assert execution_kind(quiet, retrying=False) is None
    failed = execution_event(
        execution("failed", "x" * 10 + "y" * OUTPUT_TAIL_MAX_CHARS),
        job=("ops", "nightly", "backup"),
        member_name="node-1",
        retrying=True,
        at_ms=150,
        hook_urls=("https://hooks/job",),
    )
    assert failed is not None
    assert (failed.id, failed.kind, failed.hook_urls) == (
        "execution.retryable_failure:e1",
        "execution.retryable_failure",
        ("https://hooks/job",),
    )
    assert failed.data["execution"]["output_tail"] == "y" * OUTPUT_TAIL_MAX_CHARS  # type: ignore[index,call-overload]
    assert failed.data["execution"]["exit_code"] == 3  # type: ignore[index,call-overload]
    assert failed.data["job"] == {
        "id": "j1", "project": "ops", "group": "nightly", "name": "backup",
        "path": "ops/nightly/backup",
    }  # fmt: skip
    assert failed.data["execution"]["lateness_ms"] == 10  # type: ignore[index,call-overload]
    assert failed.data["member"] == {"uuid": U1, "name": "node-1"}
    assert "hook_urls" not in json.loads(body_of(failed, "qwc"))  # the job's URLs stay inside
    assert (
        execution_event(
            execution("aborted"), job=("p", "", "j"), member_name="", retrying=False, at_ms=1
        )
        is None
    )


@pytest.mark.parametrize("kind", list(EventType))
def test_samples_are_shaped_as_real_events(kind: EventType) -> None:
    sample = sample_event(kind.value, 1_700_000_000_000)
    assert sample.kind == kind.value and sample.id.startswith(f"{kind.value}:test-")
    assert sample.data["test"] is True
    if kind.value.startswith(("member.", "takeover.", "recovery.", "execution.")):
        assert len(sample.data) > 1


# --- the body and its signature ------------------------------------------------------------


def test_the_body_is_stable_and_versioned() -> None:
    event = Event(
        id="member.dead:u:5", kind="member.dead", at_ms=1714564800123, data={"b": 1, "a": "é"}
    )
    body = body_of(event, "qwc")
    assert body == body_of(Event.model_validate(event.model_dump()), "qwc")  # the same bytes
    assert json.loads(body) == {
        "schema": SCHEMA,
        "id": "member.dead:u:5",
        "type": "member.dead",
        "time": "2024-05-01T12:00:00.123+00:00",
        "time_ms": 1714564800123,
        "cluster": "qwc",
        "data": {"a": "é", "b": 1},
    }
    assert body.startswith(b'{"cluster":"qwc","data":{"a":"\xc3\xa9","b":1},"id"')


def test_the_signature_is_the_hmac_of_the_raw_body() -> None:
    body = b'{"id":"x"}'
    expected = hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, body) == "sha256=" + expected
    assert verify("k" * 16, body, "sha256=" + expected)
    assert not verify("k" * 16, body + b" ", "sha256=" + expected)
    assert not verify("j" * 16, body, "sha256=" + expected)
    assert not verify("k" * 16, body, None)
    event = Event(id="i", kind="member.dead", at_ms=1)
    signed = headers_for(event, body, secret="k" * 16, attempt=3)
    assert signed["X-QWC-Signature"] == "sha256=" + expected
    assert (signed["X-QWC-Attempt"], signed["Idempotency-Key"], signed["X-QWC-Event-Id"]) == (
        "3",
        "i",
        "i",
    )
    assert signed["X-QWC-Event"] == "member.dead" and signed["Content-Type"] == "application/json"
    assert "X-QWC-Signature" not in headers_for(event, body, secret=None, attempt=1)


# --- the retry schedule ---------------------------------------------------------------------


def test_verdicts() -> None:
    assert [verdict(s) for s in (200, 204, 299)] == [Verdict.DELIVERED] * 3
    assert [verdict(s) for s in (None, 408, 429, 500, 502, 503)] == [Verdict.RETRY] * 6
    assert [verdict(s) for s in (301, 302, 400, 401, 403, 404, 410, 422)] == [Verdict.FINAL] * 8


POLICY = RetryPolicy(initial_ms=1000, max_ms=300_000, horizon_ms=3_600_000)


def test_the_documented_schedule() -> None:
    assert [retry_delay_ms(n, POLICY) for n in (1, 2, 3, 9, 10, 100)] == [
        1000,
        2000,
        4000,
        256_000,
        300_000,
        300_000,
    ]
    offsets = attempt_offsets_ms(POLICY)
    seconds = (0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 811, 1111)
    assert offsets[:12] == [s * 1000 for s in seconds]
    assert offsets[-2:] == [3_511_000, 3_600_000]  # the last attempt at the horizon
    assert attempt_offsets_ms(RetryPolicy(100, 500, 0)) == [0]  # horizon 0: one attempt


def test_after_failure_retries_until_the_horizon_then_gives_up() -> None:
    first = after_failure(
        None, entry_id="e1", now_ms=10_000, error="HTTP 503", status=503, final=False, policy=POLICY
    )
    assert first == Failures("e1", 1, 10_000, 11_000, "HTTP 503", 503)
    second = after_failure(
        first, entry_id="e1", now_ms=11_050, error="x", status=None, final=False, policy=POLICY
    )
    assert second == Failures("e1", 2, 10_000, 13_050, "x", None)
    asked = after_failure(
        second,
        entry_id="e1",
        now_ms=13_050,
        error="HTTP 429",
        status=429,
        final=False,
        policy=POLICY,
        retry_after_ms=120_000,
    )
    assert isinstance(asked, Failures) and asked.next_ms == 13_050 + 120_000  # Retry-After
    capped = after_failure(
        second,
        entry_id="e1",
        now_ms=13_050,
        error="",
        status=429,
        final=False,
        policy=POLICY,
        retry_after_ms=10**9,
    )
    assert isinstance(capped, Failures) and capped.next_ms == 13_050 + 300_000  # at most max
    late = after_failure(
        first,
        entry_id="e1",
        now_ms=10_000 + 3_599_000,
        error="",
        status=500,
        final=False,
        policy=POLICY,
    )
    assert isinstance(late, Failures) and late.next_ms == 10_000 + 3_600_000  # not past the horizon
    assert after_failure(
        late,
        entry_id="e1",
        now_ms=late.next_ms,
        error="gone",
        status=500,
        final=False,
        policy=POLICY,
    ) == GiveUp(3, 10_000, "gone", 500)
    assert after_failure(
        first, entry_id="e1", now_ms=11_000, error="HTTP 404", status=404, final=True, policy=POLICY
    ) == GiveUp(2, 10_000, "HTTP 404", 404)
    other = after_failure(
        first, entry_id="e2", now_ms=50_000, error="", status=None, final=False, policy=POLICY
    )
    assert isinstance(other, Failures) and (other.attempts, other.first_ms) == (1, 50_000)
