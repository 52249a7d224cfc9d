"""Autotakeover end to end: real nodes, liveness and takeover workers, real Redis and SQL.

Only what needs real processes lives here, on both stacks: a SIGKILLed member's jobs moved
on time, a SIGSTOPped member that never fires its jobs again once they moved (the fence),
and a takeover through a database outage. The worker's decisions (policy, cancel when the
member is back, one attempt per sleep, no destination, the mass-failure guard, a replica
that dies holding a proposal) are tested in-process in tests/test_takeover_worker.py, and
on recordings of live runs in tests/test_replay_data.py and tests/test_replay_live.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from schemas.keys import Keys
from tests.cluster import Cluster, membership_changes, wait_for
from tests.inprocess import create_jobs
from tests.inprocess import owners as jobs_by_owner
from workers.liveness.view import read_snapshot
from workers.store import Store, create_job, create_store_engine, list_takeovers
from workers.store.engine import SQLITE_BUSY_TIMEOUT_MS

pytestmark = pytest.mark.processes

KEYS = Keys()
DEAD_MS, DELAY_MS = 1200, 500
TAKEOVER_ENV = {
    "QWC_CLUSTERMODE_AUTOTAKEOVER_ENABLED": "true",
    "QWC_CLUSTERMODE_AUTOTAKEOVER_DELAY": str(DELAY_MS / 1000),
    "QWC_CLUSTERMODE_AUTOTAKEOVER_SLEEP": "4",
}


@pytest.fixture
def tc(cluster: Cluster) -> Iterator[Cluster]:
    cluster.extra_env.update(TAKEOVER_ENV)
    yield cluster


def open_test_store(c: Cluster) -> Store:
    return Store(create_store_engine(c.database_url))


def add_jobs(
    c: Cluster,
    owner: str,
    n: int,
    prefix: str = "job",
    *,
    schedule: str | None = None,
    concurrency: str = "forbid",
) -> list[str]:
    store = open_test_store(c)
    try:
        return create_jobs(store, owner, n, prefix, schedule=schedule, concurrency=concurrency)
    finally:
        store.close()


def owners(c: Cluster) -> dict[str, str]:
    store = open_test_store(c)
    try:
        return jobs_by_owner(store)
    finally:
        store.close()


def takeovers(c: Cluster) -> list:  # type: ignore[type-arg]
    store = open_test_store(c)
    try:
        return list_takeovers(store)
    finally:
        store.close()


def start(
    c: Cluster, members: int = 3, takeover_workers: int = 1
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    c.start("worker", "liveness")
    for _ in range(takeover_workers):
        c.start("worker", "takeover")
    nodes = [c.node(f"node-{i}") for i in range(1, members + 1)]
    r = c.client()
    wait_for(
        lambda: all(
            (s := read_snapshot(r, KEYS).states.get(u)) is not None and s.value == "active"
            for u, _ in nodes
        ),
        timeout_s=20,
        what="members active",
    )
    return nodes


@pytest.mark.both_stacks
def test_sigkill_member_jobs_move_to_active_members_on_time(tc: Cluster) -> None:
    nodes = start(tc)
    victim, proc = nodes[0]
    jobs = add_jobs(tc, victim, 30)
    proc.kill()
    wait_for(lambda: all(o != victim for o in owners(tc).values()), timeout_s=15, what="moved")
    final = owners(tc)
    survivors = {u for u, _ in nodes[1:]}
    assert set(final[j] for j in jobs) == survivors
    counts = [sum(1 for j in jobs if final[j] == u) for u in survivors]
    assert sorted(counts) == [15, 15]
    (t,) = [t for t in takeovers(tc) if t.outcome == "committed"]
    dead = [c for c in membership_changes(tc.client(), KEYS, victim) if c.to_state.value == "dead"]
    late_ms = t.decided_ms - (dead[0].last_seen_ms + DEAD_MS + DELAY_MS)
    assert 0 <= late_ms <= 500, late_ms
    assert t.jobs_moved == 30 and t.destinations == dict.fromkeys(survivors, 15)


def executions_of(c: Cluster, job_ids: list[str]) -> list:  # type: ignore[type-arg]
    from workers.store import list_executions

    store = open_test_store(c)
    try:
        return [e for j in job_ids for e in list_executions(store, job_id=j)]
    finally:
        store.close()


@pytest.mark.both_stacks
def test_paused_member_loses_its_jobs_and_never_fires_them_again(tc: Cluster) -> None:
    """SIGSTOP past considerDead + delay, with jobs firing every second, then SIGCONT."""
    if tc.database_url.startswith("sqlite"):
        pytest.skip(
            "known limitation of the embedded SQLite store: a member stopped inside a fire "
            "transaction holds the database's write lock until SIGCONT, stalling every other "
            "process (PostgreSQL only locks that member's rows); this runs on PostgreSQL"
        )
    nodes = start(tc)
    paused, proc = nodes[0]
    store = open_test_store(tc)
    jobs = [
        create_job(
            store,
            project="p",
            group_name="g",
            name=f"tick-{i}",
            command=["true"],
            schedule="* * * * * *",
            modified_by=paused,
            now_ms=int(time.time() * 1000),
        ).id
        for i in range(6)
    ]
    store.close()
    wait_for(lambda: len(executions_of(tc, jobs)) >= 12, timeout_s=20, what="jobs firing")
    os.kill(proc.pid, signal.SIGSTOP)
    wait_for(lambda: all(owners(tc)[j] != paused for j in jobs), timeout_s=15, what="taken over")
    (commit,) = [t for t in takeovers(tc) if t.outcome == "committed"]
    wait_for(  # the new owners fire them
        lambda: sum(e.fire_ms > commit.decided_ms for e in executions_of(tc, jobs)) >= 12,
        timeout_s=20,
        what="new owners firing",
    )
    os.kill(proc.pid, signal.SIGCONT)
    log = tc.logs[tc.procs.index(proc)]
    wait_for(lambda: "lost job" in log.read_text(), timeout_s=10, what="paused member notices")
    time.sleep(2)  # the scenario: the resumed member keeps running alongside the new owners
    runs = executions_of(tc, jobs)
    fired = [(e.job_id, e.fire_ms) for e in runs]
    assert len(fired) == len(set(fired)), "a (job, fire time) was fired twice"
    by_paused = [e for e in runs if e.member_uuid == paused]
    assert by_paused and all(e.owner_epoch == 1 for e in by_paused)
    assert all(e.fire_ms <= commit.decided_ms for e in by_paused)
    assert read_snapshot(tc.client(), KEYS).states[paused].value == "active"


def _hold_database(c: Cluster, seconds: float) -> None:
    """Make the store unavailable for ``seconds``: SQLite locked, PostgreSQL refusing."""
    import sqlite3

    import psycopg

    if c.database_url.startswith("sqlite"):
        conn = sqlite3.connect(c.database_url.removeprefix("sqlite:///"), timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)  # the outage itself
        conn.rollback()
        conn.close()
        return
    dbname = c.database_url.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as pg:
        pg.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        time.sleep(seconds)  # the outage itself
        pg.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')


@pytest.mark.both_stacks
def test_database_outage_during_takeover_completes_once_after(tc: Cluster) -> None:
    tc.extra_env["QWC_CLUSTERMODE_AUTOTAKEOVER_DELAY"] = "1"
    nodes = start(tc)
    victim, proc = nodes[0]
    jobs = add_jobs(tc, victim, 8)
    r = tc.client()
    proc.kill()
    wait_for(lambda: r.xlen(KEYS.takeover) >= 1, timeout_s=10, what="proposal")
    # SQLite: longer than its busy timeout after the due time, so the commit fails and is
    # retried; PostgreSQL refuses connections at once, so a shorter outage does the same
    sqlite = tc.database_url.startswith("sqlite")
    outage_s = SQLITE_BUSY_TIMEOUT_MS / 1000 + 2 if sqlite else 2.0
    outage_start = time.time()
    _hold_database(tc, outage_s)
    outage_end = time.time()
    wait_for(lambda: all(owners(tc)[j] != victim for j in jobs), timeout_s=30, what="moved")
    committed = [t for t in takeovers(tc) if t.outcome == "committed"]
    assert len(committed) == 1 and committed[0].jobs_moved == 8
    assert committed[0].due_ms < outage_end * 1000  # it was due while the store was away
    assert outage_end - outage_start >= outage_s
    takeover_log = next(log for log in tc.logs if _is_takeover(log))
    assert "retry in" in takeover_log.read_text(), takeover_log.read_text()[-2000:]
    assert all(p.poll() is None for p in tc.procs if p is not proc), tc.dump_logs()


def _is_takeover(log: os.PathLike[str]) -> bool:
    from pathlib import Path

    return "takeover worker" in Path(log).read_text()
