"""A member's pool and its drain, as real ``qwc node`` processes on real Redis and SQL:

- a long job holds one of the threadCount slots while 20 jobs fire every second, each
  started within 0.5 s of its fire time;
- SIGTERM 1 s into a 3 s job with a drain long enough: the job succeeds, the node exits 0;
- SIGTERM with a 1 s drain: the job is marked ``incomplete``, its whole process group is
  ended (the grandchild too), and it is retried on the other member; the node exits 0.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, new_uuid, wait_for
from tests.test_node_live import grandchild_pid, long_first_with_grandchild, pid_gone
from tests.test_recovery_live import Db, node, wait_state
from workers.store import create_job, create_store_engine, list_executions, list_recoveries

pytestmark = pytest.mark.processes

DRAIN_ENV = "QWC_EXECUTIONS_DRAINTIMEOUT"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_long_job_holds_one_slot_and_the_others_start_on_time(cluster: Cluster) -> None:
    member = new_uuid()
    db = Db(cluster)
    store = db._store()
    try:
        ticks = [
            create_job(
                store,
                project="p",
                group_name="",
                name=f"tick-{i}",
                command=["true"],
                schedule="* * * * * *",
                modified_by=member,
                now_ms=now_ms(),
            ).id
            for i in range(20)
        ]
        cluster.node("n1", member)
        wait_for(
            lambda: len(list_executions(store, statuses=("succeeded",))) >= 20,
            timeout_s=20,
            what="the ticks running",
        )
        long_job = db.job(
            "long", [sys.executable, "-c", "import time; time.sleep(3)"], owner=member
        )
        long_run = db.run_on(long_job, member)
        done = wait_for(
            lambda: (e := db.execution(long_run)).status == "succeeded" and e,
            timeout_s=20,
            what="the long job done",
        )
        assert done.started_ms is not None and done.ended_ms is not None
        during = [
            e
            for e in list_executions(store)
            if e.job_id in ticks and done.started_ms <= e.fire_ms < done.ended_ms
        ]
        assert len(during) >= 40  # 20 jobs for 2 s at least, all claimed
        lateness_ms = [
            e.started_ms - e.fire_ms if e.started_ms is not None else None for e in during
        ]
        assert None not in lateness_ms, [e.status for e in during]
        worst = max(ms for ms in lateness_ms if ms is not None)
        assert worst <= 500, f"a tick started {worst} ms after its fire time"
    finally:
        store.close()


def test_sigterm_lets_a_running_job_finish_within_the_drain_and_exits_0(
    cluster: Cluster,
) -> None:
    cluster.extra_env[DRAIN_ENV] = "10"
    db = Db(cluster)
    member, proc = node(cluster, "drained")
    job = db.job("three-s", [sys.executable, "-c", "import time; time.sleep(3)"], owner=member)
    run = db.run_on(job, member)
    started = wait_for(lambda: db.execution(run).started_ms, timeout_s=20, what="the job running")
    wait_for(lambda: now_ms() >= started + 1000, what="1 s into it")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    e = db.execution(run)
    assert (e.status, e.exit_code) == ("succeeded", 0)


def test_sigterm_past_the_drain_hands_the_job_back_incomplete_and_retried_elsewhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    db = Db(cluster)
    cluster.start("worker", "liveness")  # the view the drain picks a destination from
    other, _ = node(cluster, "other")
    cluster.extra_env[DRAIN_ENV] = "1"
    member, proc = node(cluster, "drained")
    wait_state(cluster, [other, member], "active")
    first = db.run_on(
        db.job("long", long_first_with_grandchild(tmp_path, "g"), owner=other, retry_count=1),
        member,
    )
    wait_for(lambda: db.execution(first).status == "running", timeout_s=20, what="running")
    grandchild = grandchild_pid(tmp_path, "g")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - sent < 8  # 1 s of drain, a 2 s grace at most, and the rest
    assert pid_gone(grandchild)
    e = db.execution(first)
    assert (e.status, e.exit_code) == ("incomplete", None)
    (retry,) = wait_for(lambda: db.retries(first), what="the retry")
    assert (retry.member_uuid, retry.attempt) == (other, 2)
    wait_for(lambda: db.execution(retry.id).status == "succeeded", what="the retry ran")
    engine = create_store_engine(cluster.database_url)
    try:
        (audit,) = [r for r in list_recoveries(engine) if r.dead_uuid == member]
    finally:
        engine.dispose()
    assert (audit.policy, audit.outcome, audit.executions_marked) == ("drain", "committed", 1)
