"""``qwc node`` as a real process on real Redis and SQL (heartbeat interval 0.2 s): it fires
its jobs through the fence, runs them on its pool, records the executions, loses jobs that
move away, drains on SIGTERM, and leaves no process behind when it is killed."""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, alive, new_uuid, wait_for
from workers.store import (
    ExecutionRow,
    Store,
    create_job,
    create_store_engine,
    get_execution,
    insert_execution,
    list_executions,
    list_recoveries,
    reassign_jobs,
    start_execution,
)

pytestmark = pytest.mark.processes

EVERY_SECOND = "* * * * * *"


@pytest.fixture
def db(cluster: Cluster) -> Iterator[Store]:
    """The cluster's database."""
    engine = create_store_engine(cluster.database_url)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def add_job(
    store: Store,
    owner: str,
    command: list[str],
    name: str = "tick",
    *,
    schedule: str | None = EVERY_SECOND,
    retry_count: int = 0,
) -> str:
    return create_job(
        store,
        project="ops",
        group_name="",
        name=name,
        command=command,
        schedule=schedule,
        modified_by=owner,
        now_ms=now_ms(),
        retry_count=retry_count,
    ).id


def log_of(cluster: Cluster, proc: subprocess.Popen[bytes]) -> str:
    return cluster.logs[cluster.procs.index(proc)].read_text(errors="replace")


def finished(store: Store, job_id: str) -> list[ExecutionRow]:
    rows = list_executions(store, job_id=job_id, statuses=("succeeded", "failed"))
    return sorted(rows, key=lambda e: e.fire_ms)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie counts as exited)."""
    return not alive(pid)


def test_every_second_job_runs_once_per_second(cluster: Cluster, db: Store) -> None:
    member = new_uuid()
    job_id = add_job(db, member, ["true"])
    cluster.node("n1", member)
    rows = wait_for(
        lambda: len(finished(db, job_id)) >= 4 and finished(db, job_id),
        timeout_s=20,
        what="four executions",
    )
    fire_times = [e.fire_ms for e in rows]
    assert len(set(fire_times)) == len(fire_times)
    assert all(t % 1000 == 0 for t in fire_times)
    assert [b - a for a, b in itertools.pairwise(fire_times)] == [1000] * (len(rows) - 1)
    for e in rows:
        assert (e.status, e.exit_code, e.member_uuid, e.trigger) == (
            "succeeded",
            0,
            member,
            "schedule",
        )
        assert e.rq_job_id == e.id and e.started_ms is not None and e.ended_ms is not None


def test_a_failing_command_is_recorded_failed(cluster: Cluster, db: Store) -> None:
    member = new_uuid()
    job_id = add_job(db, member, ["false"])
    cluster.node("n1", member)
    (first, *_) = wait_for(lambda: finished(db, job_id), timeout_s=20, what="an execution")
    assert (first.status, first.exit_code) == ("failed", 1)


def test_a_job_moved_away_stops_firing_and_is_lost_once(cluster: Cluster, db: Store) -> None:
    member, other = new_uuid(), new_uuid()
    job_id = add_job(db, member, ["true"])
    _, proc = cluster.node("n1", member)
    wait_for(lambda: finished(db, job_id), timeout_s=20, what="a first execution")
    assert reassign_jobs(db, from_owner=member, to_owner=other) == [job_id]
    moved_ms = now_ms()
    lost_line = f"member {member}: lost job {job_id} (epoch 1)"
    wait_for(lambda: lost_line in log_of(cluster, proc), timeout_s=5, what="the loss logged")
    count = len(list_executions(db, job_id=job_id))
    # three more fire times pass: nothing is fired, and the loss is not logged again
    deadline_ms = moved_ms + 3000
    while now_ms() < deadline_ms:
        assert len(list_executions(db, job_id=job_id)) == count
        time.sleep(0.05)
    late = [e for e in list_executions(db, job_id=job_id) if e.created_ms > moved_ms + 200]
    assert late == []
    assert log_of(cluster, proc).count(lost_line) == 1
    assert proc.poll() is None


def test_reassigned_back_and_forth_never_fires_a_time_twice(cluster: Cluster, db: Store) -> None:
    a, b = new_uuid(), new_uuid()
    job_ids = [add_job(db, a, ["true"], name=f"tick-{i}") for i in range(3)]
    cluster.node("a", a)
    cluster.node("b", b)
    wait_for(lambda: finished(db, job_ids[0]), timeout_s=20, what="a first execution")

    def executions() -> list[ExecutionRow]:
        return [e for j in job_ids for e in list_executions(db, job_id=j)]

    rng = random.Random(7)
    owner, moves, deadline = a, 0, time.monotonic() + 60
    # at least 12 moves, and on until both members fired some of the jobs
    while moves < 12 or {e.member_uuid for e in executions()} != {a, b}:
        assert time.monotonic() < deadline, f"{moves} moves"
        # hold times around the reload interval and the fire period (pacing, not a sync)
        time.sleep(rng.choice([0.05, 0.15, 0.25, 0.7, 1.2]))
        target = b if owner == a else a
        assert sorted(reassign_jobs(db, from_owner=owner, to_owner=target)) == sorted(job_ids)
        owner, moves = target, moves + 1
    fired = Counter((e.job_id, e.fire_ms) for e in executions())
    assert [key for key, n in fired.items() if n > 1] == []
    assert len(fired) >= 6


def test_leftover_running_executions_are_marked_incomplete_at_start(
    cluster: Cluster, db: Store
) -> None:
    member = new_uuid()
    job_id = add_job(db, member, ["true"])
    leftover = insert_execution(
        db, job_id=job_id, member_uuid=member, trigger="schedule", fire_ms=1000, now_ms=1000
    )
    assert start_execution(db, leftover, now_ms=1000)
    cluster.node("n1", member)
    wait_for(lambda: get_execution(db, leftover).status == "incomplete", what="incomplete")
    assert get_execution(db, leftover).ended_ms is not None
    assert list_executions(db, retry_of=leftover) == []  # recoverExecutions is off


def test_with_recovery_on_leftovers_with_retries_left_are_retried_here(
    cluster: Cluster, db: Store
) -> None:
    cluster.extra_env["QWC_CLUSTERMODE_RECOVEREXECUTIONS_ENABLED"] = "true"
    member = new_uuid()
    with_retry = add_job(db, member, ["true"], "a", schedule=None, retry_count=1)
    without = add_job(db, member, ["true"], "b", schedule=None)
    leftovers = []
    for job_id in (with_retry, without):
        leftover = insert_execution(
            db, job_id=job_id, member_uuid=member, trigger="schedule", fire_ms=1000, now_ms=1000
        )
        assert start_execution(db, leftover, now_ms=1000)
        leftovers.append(leftover)
    cluster.node("n1", member)
    (retry,) = wait_for(
        lambda: [e for e in list_executions(db, retry_of=leftovers[0]) if e.status == "succeeded"],
        timeout_s=20,
        what="the leftover's retry run here",
    )
    assert (retry.member_uuid, retry.attempt, retry.trigger) == (member, 2, "retry")
    assert [get_execution(db, e).status for e in leftovers] == ["incomplete", "incomplete"]
    assert list_executions(db, retry_of=leftovers[1]) == []  # no retry settings
    (audit,) = [r for r in list_recoveries(db) if r.dead_uuid == member]
    assert (audit.policy, audit.outcome, audit.executions_marked) == ("startup", "committed", 2)


def grandchild_command(tmp_path: Path, name: str) -> list[str]:
    """``sh`` that starts a grandchild sleeping 30 s (its pid in ``name``.pid) and waits."""
    return ["sh", "-c", f"sleep 30 & echo $! > {tmp_path / (name + '.pid')}; wait"]


def long_first_with_grandchild(tmp_path: Path, name: str) -> list[str]:
    """``sh`` that, the first time, starts a grandchild sleeping 30 s (its pid in
    ``name``.pid) and waits for it; later runs (the retries) exit 0 at once."""
    marker, pid_file = tmp_path / f"{name}.ran", tmp_path / f"{name}.pid"
    return [
        "sh",
        "-c",
        f"test -e {marker} || {{ touch {marker}; sleep 30 & echo $! > {pid_file}; wait; }}",
    ]


def parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (from /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def grandchild_pid(tmp_path: Path, name: str) -> int:
    pid_file = tmp_path / f"{name}.pid"
    return int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid"))


def test_no_process_of_a_killed_node_s_execution_outlives_it(
    cluster: Cluster, db: Store, tmp_path: Path
) -> None:
    """SIGKILL of the node: its watchdog ends the command's whole process group, the
    grandchild included."""
    member = new_uuid()
    job_id = add_job(db, member, grandchild_command(tmp_path, "g"), schedule=None)
    _, proc = cluster.node("n1", member)
    execution_id = insert_execution(
        db, job_id=job_id, member_uuid=member, trigger="manual", fire_ms=now_ms(), now_ms=now_ms()
    )
    wait_for(lambda: get_execution(db, execution_id).status == "running", what="running")
    grandchild = grandchild_pid(tmp_path, "g")
    sh_pid = parent_of(grandchild)
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    wait_for(lambda: pid_gone(grandchild), timeout_s=10, what="the grandchild gone")
    wait_for(lambda: pid_gone(sh_pid), timeout_s=10, what="the command gone")
    assert get_execution(db, execution_id).status == "running"  # for the recovery to decide
