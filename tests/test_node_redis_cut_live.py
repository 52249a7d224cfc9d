"""A member whose Redis goes silent (packets dropped: the tests' own proxy stops forwarding
and keeps the connections open) while its store stays reachable:

- it keeps claiming every fire of a once-a-second job, on time (firing goes through SQL
  only; heartbeats, commands and queueing wait in their own threads);
- once it is declared dead and a recovery retries its running execution elsewhere, its
  watchdog ends that execution's whole process group, the grandchild included.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, new_uuid, wait_for
from tests.tcp_proxy import RedisProxy
from tests.test_node_live import grandchild_pid, long_first_with_grandchild, pid_gone
from tests.test_recovery_live import RECOVERY_ENV, Db, node, wait_state
from workers.store import Store, create_job, create_store_engine, list_executions

pytestmark = pytest.mark.processes

INTERVAL_ENV = "QWC_CLUSTERMODE_REMOTEEXEC_PROCESS_INTERVAL"


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[RedisProxy]:
    p = RedisProxy(cluster.redis_url)
    try:
        yield p
    finally:
        p.close()  # the cut-off node's calls fail at once: it stops quickly


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_member_cut_from_redis_claims_every_fire_on_time(
    cluster: Cluster, proxy: RedisProxy
) -> None:
    cluster.extra_env[INTERVAL_ENV] = "0.2"  # commands are read (and block) every 0.2 s
    cluster.extra_env["QWC_REDIS_URL"] = proxy.url
    member = new_uuid()
    engine = create_store_engine(cluster.database_url)
    store = Store(engine)
    try:
        job = create_job(
            store,
            project="p",
            group_name="",
            name="tick",
            command=["true"],
            schedule="* * * * * *",
            modified_by=member,
            now_ms=now_ms(),
        ).id
        cluster.node("cut", member)

        def fires() -> dict[int, int]:
            return {e.fire_ms: e.created_ms for e in list_executions(store, job_id=job)}

        wait_for(
            lambda: any(e.status == "succeeded" for e in list_executions(store, job_id=job)),
            timeout_s=20,
            what="a first execution run",
        )
        proxy.blackhole()
        cut_ms = now_ms()
        first_ms, last_ms = (cut_ms // 1000 + 1) * 1000, (cut_ms // 1000 + 4) * 1000
        wait_for(lambda: last_ms in fires(), timeout_s=10, what="fires 4 s after the cut")
        claimed = fires()
        expected = range(first_ms, last_ms + 1, 1000)
        assert [t for t in expected if t not in claimed] == []  # no gap
        late = {t: claimed[t] - t for t in expected if claimed[t] - t >= 500}
        assert late == {}, f"fires claimed late (ms): {late}"
    finally:
        engine.dispose()


def test_a_cut_off_member_s_recovered_execution_dies_with_its_process_group(
    cluster: Cluster, proxy: RedisProxy, tmp_path: Path
) -> None:
    cluster.extra_env.update(RECOVERY_ENV)
    db = Db(cluster)
    cluster.start("worker", "liveness")
    cluster.start("worker", "recovery")
    live, _ = node(cluster, "live")
    cluster.extra_env["QWC_REDIS_URL"] = proxy.url
    victim, victim_proc = node(cluster, "victim")
    del cluster.extra_env["QWC_REDIS_URL"]
    wait_state(cluster, [live, victim], "active")
    first = db.run_on(
        db.job("long", long_first_with_grandchild(tmp_path, "g"), owner=live, retry_count=1),
        victim,
    )
    wait_for(lambda: db.execution(first).status == "running", timeout_s=20, what="running")
    grandchild = grandchild_pid(tmp_path, "g")
    proxy.blackhole()
    (retry,) = wait_for(lambda: db.retries(first), timeout_s=20, what="the retry elsewhere")
    assert retry.member_uuid == live
    wait_for(lambda: db.execution(retry.id).status == "succeeded", what="the retry ran")
    wait_for(lambda: pid_gone(grandchild), timeout_s=10, what="the first attempt's grandchild")
    assert victim_proc.poll() is None  # the member itself is still there, only cut off
    assert db.execution(first).status == "incomplete"
