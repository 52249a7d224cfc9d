"""Remote execute / abort end to end: real nodes, a liveness worker, the ``qwc`` CLI, real
Redis and SQL.

- ``qwc run`` then ``qwc abort`` of the running execution: its command is killed within
  ``remoteExec.process.interval`` + 1 s of the abort, the execution is ``aborted``, and no
  retry follows although the job has retries.
- ``qwc run --on`` a member that is SIGKILLed before its next command pass: once the
  member is dead, the recovery worker (recovery itself disabled) re-routes the command to
  a live member, where the job runs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rq.job import Job

from schemas.errors import NotFoundError
from schemas.keys import GROUP_COMMANDS, Keys
from schemas.settings import Settings
from tests.cluster import Cluster, new_uuid, wait_for
from tests.test_node_live import pid_gone
from workers.bus.streams import server_time_ms
from workers.commands.reroute import reroute_commands
from workers.liveness.view import read_snapshot
from workers.store import (
    Store,
    create_job,
    create_store_engine,
    get_command,
    get_execution,
    list_executions,
)

pytestmark = pytest.mark.processes

KEYS = Keys()
INTERVAL_ENV = "QWC_CLUSTERMODE_REMOTEEXEC_PROCESS_INTERVAL"


@pytest.fixture
def db(cluster: Cluster) -> Iterator[Store]:
    engine = create_store_engine(cluster.database_url)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def add_job(db: Store, owner: str, command: list[str], *, retry: int = 0) -> str:
    return create_job(
        db,
        project="ops",
        group_name="",
        name=f"job-{new_uuid()[:8]}",
        command=command,
        schedule=None,
        modified_by=owner,
        now_ms=int(time.time() * 1000),
        retry_count=retry,
    ).id


def status_of(db: Store, execution_id: str) -> str | None:
    """The execution's status; None while it does not exist (its command not processed)."""
    try:
        return get_execution(db, execution_id).status
    except NotFoundError:
        return None


def wait_active(cluster: Cluster, *uuids: str) -> None:
    r = cluster.client()
    wait_for(
        lambda: all(
            (s := read_snapshot(r, KEYS).states.get(u)) is not None and s.value == "active"
            for u in uuids
        ),
        timeout_s=20,
        what="members active",
    )


def run_json(cluster: Cluster, *args: str) -> dict[str, object]:
    return json.loads(cluster.run(*args, "--json").stdout)  # type: ignore[no-any-return]


def test_abort_stops_a_running_execution_within_the_interval_without_retry(
    cluster: Cluster, db: Store, tmp_path: Path
) -> None:
    interval_ms = 500
    cluster.extra_env[INTERVAL_ENV] = str(interval_ms / 1000)
    cluster.start("worker", "liveness")
    member, _ = cluster.node("runner")
    other, _ = cluster.node("other")
    wait_active(cluster, member, other)
    pid_file = tmp_path / "command.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    job = add_job(db, member, [sys.executable, "-c", code], retry=2)

    issued = run_json(cluster, "run", job, "--on", member)
    execution_id = str(issued["execution_id"])
    wait_for(
        lambda: status_of(db, execution_id) == "running",
        timeout_s=10,
        what="the remote execution running",
    )
    command_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="pid"))

    aborted = run_json(cluster, "abort", execution_id)
    assert aborted["outcome"] == "sent" and aborted["member_uuid"] == member
    issued_ms = get_command(db, str(aborted["command_id"])).issued_ms
    wait_for(lambda: pid_gone(command_pid), timeout_s=10, what="the command killed")
    gone_ms = server_time_ms(cluster.client())
    # the member records the command done right after sending the stop
    row = wait_for(
        lambda: (c := get_command(db, str(aborted["command_id"]))).status != "pending" and c,
        what="the abort command recorded",
    )
    assert (row.status, row.processed_by, row.detail) == ("done", member, "aborted; RQ job stopped")
    assert row.processed_ms is not None
    assert gone_ms - issued_ms <= interval_ms + 1000, gone_ms - issued_ms
    e = get_execution(db, execution_id)
    assert (e.status, e.exit_code, e.trigger, e.member_uuid) == ("aborted", None, "remote", member)
    rq_job = Job.fetch(execution_id, connection=cluster.client())
    wait_for(lambda: rq_job.get_status() == "stopped", what="RQ recorded the job stopped")
    assert cluster.client().xlen(KEYS.commands(other)) == 0  # only the runner was told
    # the member goes on with its work: a later run on it succeeds, and the aborted
    # execution was never retried
    quick = add_job(db, member, ["true"])
    later = str(run_json(cluster, "run", quick, "--on", member)["execution_id"])
    wait_for(
        lambda: status_of(db, later) == "succeeded",
        timeout_s=10,
        what="a later execution",
    )
    assert [x.id for x in list_executions(db, job_id=job)] == [execution_id]


@pytest.mark.both_stacks
def test_an_execute_for_a_member_killed_before_processing_it_runs_elsewhere(
    cluster: Cluster, db: Store, tmp_path: Path
) -> None:
    cluster.start("worker", "liveness")
    cluster.start("worker", "recovery")  # recoverExecutions.enabled is false: re-routes anyway
    cluster.extra_env[INTERVAL_ENV] = "60"  # its next pass comes long after its death
    doomed, doomed_proc = cluster.node("doomed")
    cluster.extra_env[INTERVAL_ENV] = "0.2"
    survivor, _ = cluster.node("survivor")
    wait_active(cluster, doomed, survivor)
    r = cluster.client()
    # the doomed member made its first pass (it created its group): the next is 60 s away
    wait_for(
        lambda: (
            r.exists(KEYS.commands(doomed))
            and any(
                g["name"] == GROUP_COMMANDS.encode() for g in r.xinfo_groups(KEYS.commands(doomed))
            )
        ),
        what="the doomed member's first command pass",
    )
    job = add_job(db, doomed, ["true"])
    issued = run_json(cluster, "run", job, "--on", doomed)
    doomed_proc.kill()
    doomed_proc.wait(5)
    command_id, execution_id = str(issued["command_id"]), str(issued["execution_id"])
    wait_for(
        lambda: status_of(db, execution_id) == "succeeded",
        timeout_s=20,
        what="the re-routed execution run by the survivor",
    )
    assert read_snapshot(r, KEYS).states[doomed].value == "dead"
    e = get_execution(db, execution_id)
    assert (e.member_uuid, e.trigger, e.exit_code) == (survivor, "remote", 0)
    row = get_command(db, command_id)
    assert (row.status, row.target_uuid, row.routed, row.processed_by) == (
        "done",
        survivor,
        1,
        survivor,
    )
    settings = Settings(home_dir=tmp_path)
    assert reroute_commands(r, db, KEYS, settings, doomed, server_time_ms(r)) == []  # nothing left
