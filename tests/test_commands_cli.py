"""``qwc run``, ``qwc abort`` and ``qwc commands``: outputs, JSON and exit codes, through the
CLI in-process on real Redis and SQL (members set in the liveness view by hand)."""

from __future__ import annotations

import time

import redis

from schemas.messages import MemberState
from tests.cluster import new_uuid
from tests.inprocess import Qwc, View
from workers.store import (
    Store,
    create_job,
    finish_execution,
    get_command,
    get_execution,
    insert_execution,
    list_commands,
    start_execution,
)


def add_job(store: Store, owner: str) -> str:
    return create_job(
        store,
        project="ops",
        group_name="",
        name="backup",
        command=["true"],
        schedule=None,
        modified_by=owner,
        now_ms=int(time.time() * 1000),
    ).id


def test_run_refuses_dead_unknown_and_bad_targets_with_exit_2(
    r: redis.Redis, store: Store, qwc: Qwc
) -> None:
    v = View(r)
    gone = new_uuid()
    v.beat(gone)
    v.to(gone, MemberState.DEAD)
    job = add_job(store, gone)
    dead = qwc("run", job, "--on", gone)
    assert dead.exit_code == 2 and f"member {gone} is dead" in dead.stderr
    unknown = qwc("run", job, "--on", new_uuid())
    assert unknown.exit_code == 2 and "unknown to the liveness view" in unknown.stderr
    bad = qwc("run", job, "--on", "not-a-uuid")
    assert bad.exit_code == 2 and "not a UUID" in bad.stderr
    no_job = qwc("run", "ops/none", "--on", gone)
    assert no_job.exit_code == 2 and "no job with id or path 'ops/none'" in no_job.stderr
    nobody = qwc("run", "ops/backup")
    assert nobody.exit_code == 1 and "no member may run job ops/backup" in nobody.stderr
    assert list_commands(store) == []
    outputs = dead.stderr + unknown.stderr + bad.stderr + no_job.stderr + nobody.stderr
    assert "Traceback" not in outputs


def test_run_then_abort_cancels_and_commands_shows_it(
    r: redis.Redis, store: Store, qwc: Qwc
) -> None:
    live = new_uuid()
    View(r).beat(live)
    job = add_job(store, live)
    issued = qwc.json("run", "ops/backup", "--expires", "60")
    assert (issued["target_uuid"], issued["job_id"]) == (live, job)
    assert issued["reason"] == "policy None: the job's owner"
    assert issued["expires_at_ms"] - issued["issued_at_ms"] == 60_000
    assert issued["issued_by"].startswith("qwc:")
    (pending,) = qwc.json("commands")
    assert (pending["id"], pending["status"], pending["action"]) == (
        issued["command_id"],
        "pending",
        "execute",
    )
    aborted = qwc.json("abort", issued["execution_id"])
    assert (aborted["outcome"], aborted["command_id"]) == ("cancelled", issued["command_id"])
    listed = qwc.json("commands", "--status", "cancelled")
    assert [c["id"] for c in listed] == [issued["command_id"]]
    assert listed[0]["processed_by"].startswith("qwc:") and listed[0]["processed_at"]
    assert qwc.json("commands", "--member", new_uuid()) == []
    qwc.env["COLUMNS"] = "160"  # a terminal wide enough for the table
    table = qwc("commands").stdout
    assert "│ execute │" in table and "│ cancelled │" in table
    assert issued["execution_id"] in table and "cancelled before it was processed" in table
    again = qwc("abort", issued["execution_id"])
    assert again.exit_code == 1 and "never created" in again.stdout


def test_abort_outcomes_and_exit_codes(r: redis.Redis, store: Store, qwc: Qwc) -> None:
    v = View(r)
    live, gone = new_uuid(), new_uuid()
    v.beat(live)
    v.beat(gone)
    v.to(gone, MemberState.DEAD)
    job = add_job(store, live)

    def execution(member: str) -> str:
        e = insert_execution(
            store, job_id=job, member_uuid=member, trigger="schedule", fire_ms=1, now_ms=1
        )
        assert start_execution(store, e, now_ms=2)
        return e

    unknown = qwc("abort", "no-such-execution")
    assert unknown.exit_code == 2 and "no execution no-such-execution" in unknown.stderr
    ended = execution(live)
    assert finish_execution(store, ended, status="failed", now_ms=3)
    result = qwc("abort", ended)
    assert result.exit_code == 1 and "had already ended: failed" in result.stdout
    on_dead = execution(gone)
    applied = qwc.json("abort", on_dead)
    assert (applied["outcome"], applied["status"]) == ("applied", "aborted")
    assert get_execution(store, on_dead).status == "aborted"
    on_live = execution(live)
    sent = qwc("abort", on_live)
    assert sent.exit_code == 0, sent.output
    assert f"abort command sent to member {live}" in sent.stdout
    assert "remoteExec.process.interval, 10 s" in sent.stdout
    (command,) = list_commands(store)
    assert (command.action, command.execution_id, command.target_uuid) == ("abort", on_live, live)
    assert get_command(store, command.id).status == "pending"  # until the member processes it
    assert get_execution(store, on_live).status == "running"
