"""``qwc jobs edit|delete|enable|disable``, owners named by name or chosen by the fewest-jobs
rule, JOB as an id or a path everywhere, and ``qwc members`` at 80 columns: in-process
(click's runner) against real databases (and Redis where a command needs it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from schemas.keys import Keys
from tests.fixtures_cli import json_of
from workers.store import (
    Store,
    get_execution,
    get_job,
    insert_execution,
    list_executions,
    list_jobs,
    record_member_state,
    start_execution,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"


def member(
    store: Store, uuid: str, name: str, state: str = "active", passive: bool = False
) -> None:
    record_member_state(
        store, uuid=uuid, name=name, state=state, last_seen_ms=1, changed_ms=1, passive=passive
    )


def add(run: Any, name: str = "hello", *args: str, **env: str) -> dict[str, Any]:
    return json_of(run("jobs", "add", name, "--command", "true", *args, "--json", **env))  # type: ignore[no-any-return]


# ---- edit --------------------------------------------------------------------------------


def test_edit_through_a_member_named_by_name_moves_the_job_to_it(run: Any, store: Store) -> None:
    member(store, B, "node-2")
    job = add(run, "hello", "--as", A, "--schedule", "0 2 * * *")
    result = run(
        "jobs", "edit", "default/hello", "--schedule", "0 0 12 ? * MON-FRI",
        "--time-zone", "Europe/Paris", "--retry", "2", "--as", "node-2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"job {job['id']} modified: default/hello: ")
    assert f"owner {B} (epoch 2)" in result.stdout
    stored = get_job(store, job["id"])
    assert (stored.owner_uuid, stored.owner_epoch, stored.modified_by) == (B, 2, B)
    assert (stored.schedule, stored.time_zone, stored.retry_count) == (
        "0 0 12 ? * MON-FRI",
        "Europe/Paris",
        2,
    )


def test_edit_without_a_member_keeps_the_owner_and_bumps_the_epoch(run: Any, store: Store) -> None:
    job = add(run, "hello", "--as", A, "--timeout", "5")
    edited = json_of(
        run("jobs", "edit", job["id"], "--shell", "echo hi | wc -c", "--no-timeout", "--json")
    )
    assert (edited["owner_uuid"], edited["owner_epoch"], edited["timeout_s"]) == (A, 2, None)
    assert edited["executor"] == {"kind": "shell", "script": "echo hi | wc -c"}
    through_server = json_of(
        run("jobs", "edit", job["id"], "--misfire", "fire_once", "--misfire-grace", "30",
            "--json", QWC_SERVER_UUID=C)
    )  # fmt: skip
    assert (through_server["owner_uuid"], through_server["owner_epoch"]) == (C, 3)
    assert (through_server["misfire"], through_server["misfire_grace_s"]) == ("fire_once", 30.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["default/none", "--retry", "1"], "no job with id or path 'default/none'"),
        (["default/hello"], "nothing to change"),
        (["default/hello", "--time-zone", "europe/paris"], "did you mean 'Europe/Paris'"),
        (["default/hello", "--schedule", "0 0 12 ? * 8"], "field 'schedule'"),
        (["default/hello", "--as", "node-9"], "no member is named 'node-9'"),
        (["default/hello", "--kwargs", "{}"], "--kwargs needs --python"),
    ],
)
def test_edit_refuses_with_exit_2_and_changes_nothing(
    run: Any, store: Store, args: list[str], message: str
) -> None:
    job = add(run, "hello", "--as", A)
    result = run("jobs", "edit", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert get_job(store, job["id"]).owner_epoch == 1


def test_edit_onto_another_jobs_name_names_that_job(run: Any, store: Store) -> None:
    other = add(run, "other", "--as", A)
    add(run, "hello", "--as", A)
    result = run("jobs", "edit", "default/hello", "--name", "other")
    assert result.exit_code == 1
    assert f"job default/other (id {other['id']}) already exists" in result.stderr


def test_add_of_an_existing_name_names_the_existing_job(run: Any) -> None:
    first = add(run, "hello", "--as", A)
    again = run("jobs", "add", "hello", "--command", "false", "--as", B)
    assert again.exit_code == 1
    assert f"job default/hello (id {first['id']}) already exists" in again.stderr


# ---- owners ------------------------------------------------------------------------------


def test_as_takes_a_name_and_refuses_an_ambiguous_or_unknown_one(run: Any, store: Store) -> None:
    member(store, A, "web")
    member(store, B, "db")
    member(store, C, "db", state="inactive")
    assert add(run, "j1", "--as", "web")["owner_uuid"] == A
    assert add(run, "j2", "--as", "WEB")["owner_uuid"] == A  # case ignored when unique
    ambiguous = run("jobs", "add", "j3", "--command", "true", "--as", "db")
    assert ambiguous.exit_code == 2
    assert f"member name 'db' is ambiguous: db ({B}, active); db ({C}, inactive)" in (
        ambiguous.stderr
    )
    unknown = run("jobs", "add", "j4", "--command", "true", "--as", "cache")
    assert unknown.exit_code == 2 and f"web ({A}, active)" in unknown.stderr


def test_without_an_owner_a_new_job_goes_to_the_active_member_with_fewest_jobs(
    run: Any, store: Store
) -> None:
    member(store, A, "node-1")
    member(store, B, "node-2")
    member(store, C, "node-3", state="dead")
    add(run, "a1", "--as", A)
    result = run("jobs", "add", "new", "--command", "true")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith(
        f"owner {B} (the active member owning the fewest jobs: node-2, 0 before)"
    )
    member(store, A, "node-1", passive=True)  # a passive member never receives jobs
    assert add(run, "newer")["owner_uuid"] == B


# ---- enable / disable ----------------------------------------------------------------------


def test_disable_and_enable_each_flag(run: Any, store: Store) -> None:
    job = add(run, "hello", "--as", A, "--schedule", "* * * * *")
    result = run("jobs", "disable", "default/hello", "--execution-only")
    assert result.exit_code == 0, result.output
    assert "schedule enabled, execution disabled; owner" in result.stdout
    stored = get_job(store, job["id"])
    assert (stored.schedule_enabled, stored.execution_enabled, stored.owner_epoch) == (
        True,
        False,
        2,
    )
    assert run("jobs", "disable", job["id"]).exit_code == 0
    assert not get_job(store, job["id"]).schedule_enabled
    listed = run("jobs", "list", COLUMNS="200")
    assert " no " in listed.stdout
    assert run("jobs", "enable", job["id"], "--schedule-only").exit_code == 0
    stored = get_job(store, job["id"])
    assert (stored.schedule_enabled, stored.execution_enabled) == (True, False)
    both = run("jobs", "enable", job["id"], "--schedule-only", "--execution-only")
    assert both.exit_code == 2 and "at most one" in both.stderr


def test_run_of_a_job_whose_execution_is_disabled_is_refused(
    run: Any, store: Store, r: redis.Redis, redis_url: str
) -> None:
    job = add(run, "hello", "--as", A, "--execution-disabled")
    refused = run("run", "default/hello", "--on", A, QWC_REDIS_URL=redis_url)
    assert refused.exit_code == 2
    assert f"job default/hello (id {job['id']}): its executions are disabled" in refused.stderr
    assert r.xlen(Keys().commands(A)) == 0


# ---- delete --------------------------------------------------------------------------------


def test_delete_keeps_the_history_and_frees_the_name(run: Any, store: Store) -> None:
    job = add(run, "hello", "--as", A)
    done = insert_execution(
        store, job_id=job["id"], member_uuid=A, trigger="manual", fire_ms=1, now_ms=1
    )
    start_execution(store, done, now_ms=2)
    result = run("jobs", "delete", "default/hello")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"job {job['id']} deleted: default/hello\n")
    assert "1 running execution(s) go on until they end (--abort aborts them)" in result.stdout
    assert list_jobs(store) == []
    assert get_execution(store, done).status == "running"
    history = json_of(run("executions", "--job", job["id"], "--json"))
    assert [e["id"] for e in history] == [done]
    shown = run("executions", "show", done)
    assert "default/hello (job deleted)" in shown.stdout
    assert run("jobs", "delete", "default/hello").exit_code == 2
    assert add(run, "hello", "--as", A)["id"] != job["id"]


def test_delete_with_abort_aborts_its_running_executions(
    run: Any, store: Store, r: redis.Redis, redis_url: str
) -> None:
    job = add(run, "hello", "--as", A)
    running = insert_execution(
        store, job_id=job["id"], member_uuid=A, trigger="manual", fire_ms=1, now_ms=1
    )
    start_execution(store, running, now_ms=2)
    result = run("jobs", "delete", job["id"], "--abort", "--json", QWC_REDIS_URL=redis_url)
    answer = json.loads(result.stdout)
    assert answer["running"] == [running] and answer["job"]["id"] == job["id"]
    assert answer["aborts"][0].startswith("abort applied: member")  # A is in no view: at once
    assert get_execution(store, running).status == "aborted"


# ---- JOB is an id or a path everywhere ------------------------------------------------------


def test_executions_job_takes_a_path(run: Any, store: Store) -> None:
    job = add(run, "slow", "--as", A)
    add(run, "other", "--as", A)
    mine = insert_execution(
        store, job_id=job["id"], member_uuid=A, trigger="manual", fire_ms=1, now_ms=1
    )
    listed = json_of(run("executions", "--job", "default/slow", "--json"))
    assert [e["id"] for e in listed] == [mine]
    unknown = run("executions", "--job", "default/none")
    assert unknown.exit_code == 2 and "no job with id or path 'default/none'" in unknown.stderr
    assert [e.id for e in list_executions(store)] == [mine]


def test_takeover_job_takes_a_path(run: Any, store: Store, r: redis.Redis, redis_url: str) -> None:
    job = add(run, "slow", "--as", A)
    add(run, "other", "--as", A)
    member(store, B, "node-2")
    answer = json_of(
        run("takeover", "--from", A, "--to", B, "--job", "default/slow", "--json",
            QWC_REDIS_URL=redis_url)
    )  # fmt: skip
    assert [j["id"] for j in answer["takeoverSchedule"]["jobs"]["successful"]] == [job["id"]]
    unknown = run("takeover", "--from", A, "--job", "default/none", QWC_REDIS_URL=redis_url)
    assert unknown.exit_code == 2 and "no job with id or path" in unknown.stderr


def test_jobs_next_reads_a_job_in_its_zone(run: Any) -> None:
    add(run, "noon", "--as", A, "--schedule", "0 12 * * *", "--time-zone", "Asia/Tokyo")
    shown = json_of(run("jobs", "next", "default/noon", "--count", "1", "--json",
                        "--after", "2026-01-01T00:00Z"))  # fmt: skip
    assert (shown["time_zone"], shown["time_zone_from"]) == ("Asia/Tokyo", "job")
    assert shown["fires"][0]["local"] == "2026-01-01T12:00:00+09:00"


# ---- qwc members never cuts a UUID ------------------------------------------------------------


def test_members_shows_whole_uuids_at_80_columns(
    run: Any, store: Store, r: redis.Redis, redis_url: str
) -> None:
    names = {A: "node-1", B: "a-member-with-a-very-long-name-indeed", C: "n3"}
    for uuid, name in names.items():
        member(store, uuid, name)
    result = run("members", QWC_REDIS_URL=redis_url, COLUMNS="80")
    assert result.exit_code == 0, result.output
    assert all(uuid in result.stdout for uuid in names)
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    wide = run("members", "--wide", QWC_REDIS_URL=redis_url, COLUMNS="160")
    assert "last_seen" in wide.stdout and all(uuid in wide.stdout for uuid in names)


def test_hooks_are_added_edited_cleared_and_shown_redacted(run: Any, store: Store) -> None:
    token_url = "https://hooks.example.com/t/s3cret"
    job = add(run, "hooked", "--as", A, "--on-failure", token_url, "--on-failure", "http://b/",
              "--on-start", "http://s/")  # fmt: skip
    assert get_job(store, job["id"]).notify == {
        "onstart": ("http://s/",), "onfailure": (token_url, "http://b/"),
    }  # fmt: skip
    shown = run("jobs", "show", "default/hooked")
    assert (
        shown.exit_code == 0 and "onfailure: https://hooks.example.com/…, http://b/" in shown.stdout
    )
    assert "s3cret" not in shown.stdout
    edited = run("jobs", "edit", "default/hooked", "--on-failure", "", "--on-timeout", "http://t/")
    assert edited.exit_code == 0, edited.output
    assert get_job(store, job["id"]).notify == {
        "onstart": ("http://s/",),
        "ontimeout": ("http://t/",),
    }
    bad = run("jobs", "edit", "default/hooked", "--on-success", "ftp://x/")
    assert (
        bad.exit_code == 2 and "field 'notify.onsuccess': 'ftp://x/' is not an http" in bad.output
    )
    cleared = run("jobs", "edit", "default/hooked", "--no-hooks")
    assert cleared.exit_code == 0 and get_job(store, job["id"]).notify == {}
    assert run("jobs", "show", "nope/nothing").exit_code == 2
