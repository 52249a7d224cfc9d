"""``qwc run``, ``qwc abort`` and ``qwc commands`` as a user runs them: outputs, JSON and
exit codes, on real Redis and SQL (members set in the liveness view by hand)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from schemas.messages import MemberState
from tests.cluster import Cluster, new_uuid
from tests.inprocess import View
from workers.store import (
    Store,
    create_job,
    create_store_engine,
    finish_execution,
    get_command,
    get_execution,
    insert_execution,
    list_commands,
    start_execution,
)

pytestmark = pytest.mark.processes


@pytest.fixture
def db(cluster: Cluster) -> Iterator[Store]:
    engine = create_store_engine(cluster.database_url)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[redis.Redis]:
    c = cluster.client()
    try:
        yield c
    finally:
        c.close()


def add_job(db: Store, owner: str) -> str:
    return create_job(
        db,
        project="ops",
        group_name="",
        name="backup",
        command=["true"],
        schedule=None,
        modified_by=owner,
        now_ms=int(time.time() * 1000),
    ).id


def test_run_refuses_dead_unknown_and_bad_targets_with_exit_2(
    cluster: Cluster, db: Store, client: redis.Redis
) -> None:
    v = View(client)
    gone = new_uuid()
    v.beat(gone)
    v.to(gone, MemberState.DEAD)
    job = add_job(db, gone)
    dead = cluster.run("run", job, "--on", gone, check=False)
    assert dead.returncode == 2 and f"member {gone} is dead" in dead.stderr
    unknown = cluster.run("run", job, "--on", new_uuid(), check=False)
    assert unknown.returncode == 2 and "unknown to the liveness view" in unknown.stderr
    bad = cluster.run("run", job, "--on", "not-a-uuid", check=False)
    assert bad.returncode == 2 and "not a UUID" in bad.stderr
    no_job = cluster.run("run", "ops/none", "--on", gone, check=False)
    assert no_job.returncode == 2 and "no job with id or path 'ops/none'" in no_job.stderr
    nobody = cluster.run("run", "ops/backup", check=False)
    assert nobody.returncode == 1 and "no member may run job ops/backup" in nobody.stderr
    assert list_commands(db) == []
    outputs = dead.stderr + unknown.stderr + bad.stderr + no_job.stderr + nobody.stderr
    assert "Traceback" not in outputs


def test_run_then_abort_cancels_and_commands_shows_it(
    cluster: Cluster, db: Store, client: redis.Redis
) -> None:
    live = new_uuid()
    View(client).beat(live)
    job = add_job(db, live)
    issued = json.loads(cluster.run("run", "ops/backup", "--expires", "60", "--json").stdout)
    assert (issued["target_uuid"], issued["job_id"]) == (live, job)
    assert issued["reason"] == "policy None: the job's owner"
    assert issued["expires_at_ms"] - issued["issued_at_ms"] == 60_000
    assert issued["issued_by"].startswith("qwc:")
    (pending,) = json.loads(cluster.run("commands", "--json").stdout)
    assert (pending["id"], pending["status"], pending["action"]) == (
        issued["command_id"],
        "pending",
        "execute",
    )
    aborted = json.loads(cluster.run("abort", issued["execution_id"], "--json").stdout)
    assert (aborted["outcome"], aborted["command_id"]) == ("cancelled", issued["command_id"])
    listed = json.loads(cluster.run("commands", "--status", "cancelled", "--json").stdout)
    assert [c["id"] for c in listed] == [issued["command_id"]]
    assert listed[0]["processed_by"].startswith("qwc:") and listed[0]["processed_at"]
    assert json.loads(cluster.run("commands", "--member", new_uuid(), "--json").stdout) == []
    cluster.extra_env["COLUMNS"] = "160"  # a terminal wide enough for the table
    table = cluster.run("commands").stdout
    assert "│ execute │" in table and "│ cancelled │" in table
    assert issued["execution_id"] in table and "cancelled before it was processed" in table
    again = cluster.run("abort", issued["execution_id"], check=False)
    assert again.returncode == 1 and "never created" in again.stdout


def test_abort_outcomes_and_exit_codes(cluster: Cluster, db: Store, client: redis.Redis) -> None:
    v = View(client)
    live, gone = new_uuid(), new_uuid()
    v.beat(live)
    v.beat(gone)
    v.to(gone, MemberState.DEAD)
    job = add_job(db, live)

    def execution(member: str) -> str:
        e = insert_execution(
            db, job_id=job, member_uuid=member, trigger="schedule", fire_ms=1, now_ms=1
        )
        assert start_execution(db, e, now_ms=2)
        return e

    unknown = cluster.run("abort", "no-such-execution", check=False)
    assert unknown.returncode == 2 and "no execution no-such-execution" in unknown.stderr
    ended = execution(live)
    assert finish_execution(db, ended, status="failed", now_ms=3)
    result = cluster.run("abort", ended, check=False)
    assert result.returncode == 1 and "had already ended: failed" in result.stdout
    on_dead = execution(gone)
    applied = json.loads(cluster.run("abort", on_dead, "--json").stdout)
    assert (applied["outcome"], applied["status"]) == ("applied", "aborted")
    assert get_execution(db, on_dead).status == "aborted"
    on_live = execution(live)
    sent = cluster.run("abort", on_live)
    assert f"abort command sent to member {live}" in sent.stdout
    assert "remoteExec.process.interval, 10 s" in sent.stdout
    (command,) = list_commands(db)
    assert (command.action, command.execution_id, command.target_uuid) == ("abort", on_live, live)
    assert get_command(db, command.id).status == "pending"  # until the member processes it
    assert get_execution(db, on_live).status == "running"
