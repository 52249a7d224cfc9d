"""The recovery worker in-process, against real Redis and a real store.

The liveness view is set by hand through its own API (tests/inprocess.py ``View``), so
each test decides exactly who is active, passive or dead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from schemas.keys import GROUP_RECOVERY, Keys
from schemas.messages import MemberState, RecoveryProposal
from schemas.settings import RecoverPolicy, Settings
from tests.cluster import new_uuid, wait_for
from tests.inprocess import (
    Threads,
    View,
    redelivered_and_acked,
    step_until,
    worker_client,
    worker_settings,
)
from workers.liveness import view
from workers.proposals import new_proposal, publish_once_per_sleep
from workers.recovery.worker import RecoveryWorker
from workers.store import (
    RecoveryRow,
    Store,
    create_job,
    finish_execution,
    get_execution,
    insert_execution,
    list_executions,
    list_recoveries,
    start_execution,
)
from workers.takeover.guard import release_guard

KEYS = Keys()
DELAY_S, SLEEP_S = 0.3, 1.0
RECOVERY = (KEYS.recovery, GROUP_RECOVERY)


def settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values = {"recover_enabled": True, "recover_delay_s": DELAY_S, "recover_sleep_s": SLEEP_S}
    return worker_settings(redis_url, tmp_path, **(values | overrides))


def worker(
    threads: Threads, redis_url: str, store: Store, s: Settings, consumer: str
) -> RecoveryWorker:
    """A replica with a client of its own, stopped with the test's other threads."""
    return RecoveryWorker(worker_client(redis_url), store, s, consumer=consumer, stop=threads.stop)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def job(store: Store, name: str, *, retry_count: int = 0, retry_delay_s: float = 0.0) -> str:
    return create_job(
        store,
        project="p",
        group_name="g",
        name=name,
        command=["sleep", "30"],
        schedule=None,
        modified_by=new_uuid(),
        now_ms=now_ms(),
        retry_count=retry_count,
        retry_delay_s=retry_delay_s,
    ).id


def execution(store: Store, job_id: str, member: str, *, running: bool = True) -> str:
    execution_id = insert_execution(
        store,
        job_id=job_id,
        member_uuid=member,
        trigger="manual",
        fire_ms=now_ms(),
        now_ms=now_ms(),
    )
    if running:
        assert start_execution(store, execution_id, now_ms=now_ms(), member_uuid=member)
    return execution_id


def recoveries(store: Store, outcome: str | None = None) -> list[RecoveryRow]:
    return [r for r in list_recoveries(store) if outcome is None or r.outcome == outcome]


def retries_of(store: Store, execution_id: str) -> list[Any]:
    return list_executions(store, retry_of=execution_id)


def status(store: Store, execution_id: str) -> str:
    return get_execution(store, execution_id).status


def test_running_executions_become_incomplete_and_retry_on_the_least_loaded_live_member(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, busy, idle, passive, other_dead = (new_uuid() for _ in range(5))
    v = View(r)
    v.beat(dead)
    v.beat(busy, running=("x",))
    v.beat(idle)
    v.beat(passive, passive=True)
    v.beat(other_dead)
    v.die(other_dead)
    with_retry = job(store, "with-retry", retry_count=2, retry_delay_s=0.5)
    without = job(store, "without")
    retried, marked_only = execution(store, with_retry, dead), execution(store, without, dead)
    done = execution(store, without, dead)
    finish_execution(store, done, status="succeeded", now_ms=now_ms(), exit_code=0)
    waiting = execution(store, without, dead, running=False)
    threads.start(worker(threads, redis_url, store, settings(redis_url, tmp_path), "w1"))
    v.die(dead)
    (row,) = wait_for(lambda: recoveries(store, "committed"), what="recovery committed")

    assert row.dead_uuid == dead and row.decided_ms is not None
    assert row.due_ms - row.proposed_ms == DELAY_S * 1000 and row.decided_ms >= row.due_ms
    assert (status(store, retried), status(store, marked_only)) == ("incomplete", "incomplete")
    assert status(store, done) == "succeeded"  # only running executions are marked
    (retry,) = retries_of(store, retried)
    assert (retry.member_uuid, retry.attempt, retry.trigger, retry.status) == (
        idle,
        2,
        "retry",
        "scheduled",
    )
    assert retry.fire_ms == row.decided_ms + 500  # the job's retry delay
    assert retries_of(store, marked_only) == []
    assert get_execution(store, waiting).member_uuid == idle  # waiting work moves too
    assert row.executions_marked == 2 and [x["retry_execution"] for x in row.retries] == [retry.id]
    # acknowledged once decided (the audit row is written first)
    wait_for(lambda: r.xpending(*RECOVERY)["pending"] == 0, what="acknowledged")


def test_a_redelivered_or_second_proposal_starts_no_second_retry(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    first = execution(store, job(store, "j", retry_count=3), dead)
    s = settings(redis_url, tmp_path)
    w1 = worker(threads, redis_url, store, s, "w1")
    v.die(dead)
    step_until(w1, lambda: recoveries(store, "committed"), "first commit")
    # the same proposal delivered again, to another replica (as after a crash before XACK)
    r.xgroup_setid(KEYS.recovery, GROUP_RECOVERY, "0")
    w2 = worker(threads, redis_url, store, s, "w2")
    step_until(w2, lambda: redelivered_and_acked(r, *RECOVERY), "redelivery handled")
    # and a second proposal for the same death, after the attempt key expired
    r.delete(KEYS.recovery_attempt(dead))
    snap = view.read_snapshot(r, KEYS)
    second = new_proposal(
        RecoveryProposal,
        dead_uuid=dead,
        policy="any",
        proposed_at_ms=snap.now_ms,
        delay_ms=0,
        last_seen_ms=snap.seen_ms[dead],
    )
    assert publish_once_per_sleep(
        r, second, attempt_key=KEYS.recovery_attempt(dead), stream=KEYS.recovery, sleep_ms=2000
    )
    step_until(w2, lambda: len(recoveries(store)) == 2, "second proposal decided")

    assert r.xlen(KEYS.recovery) == 2
    assert len(retries_of(store, first)) == 1
    by_id = {row.proposal_id: row for row in recoveries(store)}
    assert by_id[second.id].outcome == "skipped"  # nothing is running there any more
    assert len(by_id) == 2 and len(recoveries(store, "committed")) == 1


def test_a_decided_proposal_delivered_again_is_acknowledged_though_the_guard_holds(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, live, a, b = (new_uuid() for _ in range(4))
    v = View(r)
    for member in (dead, live, a, b):
        v.beat(member)
    first = execution(store, job(store, "j", retry_count=3), dead)
    s = settings(redis_url, tmp_path)
    w1 = worker(threads, redis_url, store, s, "w1")
    v.die(dead)
    step_until(w1, lambda: recoveries(store, "committed"), "first commit")
    for member in (a, b):  # silent, not dead yet: the guard would hold a new decision
        v.to(member, MemberState.INACTIVE)
    r.xgroup_setid(KEYS.recovery, GROUP_RECOVERY, "0")  # as after a crash before XACK
    w2 = worker(threads, redis_url, store, s, "w2")
    step_until(w2, lambda: redelivered_and_acked(r, *RECOVERY), "redelivery acknowledged")
    assert [row.outcome for row in recoveries(store)] == ["committed"]  # never "held"
    assert len(retries_of(store, first)) == 1 and r.hgetall(KEYS.takeover_held) == {}


def test_member_back_before_the_delay_cancels(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    running = execution(store, job(store, "j", retry_count=1), dead)
    threads.start(
        worker(threads, redis_url, store, settings(redis_url, tmp_path, recover_delay_s=0.6), "w1")
    )
    v.die(dead)
    wait_for(lambda: r.xlen(KEYS.recovery) == 1, what="proposed")
    v.beat(dead)
    (row,) = wait_for(lambda: recoveries(store, "cancelled"), what="cancelled")
    assert row.decided_ms is not None and row.decided_ms >= row.due_ms
    assert status(store, running) == "running" and retries_of(store, running) == []
    assert recoveries(store, "committed") == []


def test_no_destination_is_recorded_and_retried_after_sleep(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, passive, newcomer = new_uuid(), new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(passive, passive=True)
    running = execution(store, job(store, "j", retry_count=1), dead)
    threads.start(worker(threads, redis_url, store, settings(redis_url, tmp_path), "w1"))
    v.die(dead)
    (first,) = wait_for(lambda: recoveries(store, "no_destination"), what="no destination")
    assert status(store, running) == "running"  # nothing changed
    v.beat(newcomer)
    (row,) = wait_for(lambda: recoveries(store, "committed"), timeout_s=15, what="retried")
    assert row.proposed_ms - first.proposed_ms >= SLEEP_S * 1000
    (retry,) = retries_of(store, running)
    assert retry.member_uuid == newcomer  # never the passive member
    assert status(store, running) == "incomplete"


def test_static_policy_recovers_only_allowed_members(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    allowed, other = new_uuid(), new_uuid()
    lives = [new_uuid() for _ in range(3)]  # 2 of 5 dying is no mass failure
    v = View(r)
    for m in (allowed, other, *lives):
        v.beat(m)
    j = job(store, "j", retry_count=1)
    on_allowed, on_other = execution(store, j, allowed), execution(store, j, other)
    s = settings(
        redis_url, tmp_path, recover_policy=RecoverPolicy.STATIC, recover_allowed=(allowed,)
    )
    threads.start(worker(threads, redis_url, store, s, "w1"))
    v.die(other)
    v.die(allowed)
    wait_for(lambda: recoveries(store, "committed"), what="allowed member recovered")
    (skip,) = wait_for(lambda: recoveries(store, "skipped"), what="skip recorded")
    assert skip.dead_uuid == other and "not in recoverExecutions.config.allowed" in skip.detail
    assert len(retries_of(store, on_allowed)) == 1
    assert retries_of(store, on_other) == [] and status(store, on_other) == "running"
    assert r.xlen(KEYS.recovery) == 1


def test_a_death_the_worker_missed_is_found_by_the_scan(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    running = execution(store, job(store, "j"), dead)
    v.die(dead)
    r.delete(KEYS.membership)  # the change is gone (trimmed, or emitted before any worker)
    threads.start(worker(threads, redis_url, store, settings(redis_url, tmp_path), "w1"))
    (row,) = wait_for(lambda: recoveries(store, "committed"), what="recovered by the scan")
    assert row.dead_uuid == dead and status(store, running) == "incomplete"
    assert retries_of(store, running) == []  # a job without retries is only marked


def test_a_proposal_held_by_a_dead_replica_is_reclaimed(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    running = execution(store, job(store, "j", retry_count=1), dead)
    # a sleep longer than delay + the reclaim margin: no second attempt meanwhile
    s = settings(redis_url, tmp_path, recover_sleep_s=5.0)
    doomed = worker(threads, redis_url, store, s, "doomed")
    v.die(dead)
    step_until(doomed, lambda: doomed.held, "held by the doomed replica")
    # the doomed replica never steps again; another one reclaims after delay + margin
    threads.start(worker(threads, redis_url, store, s, "w2"))
    (row,) = wait_for(lambda: recoveries(store, "committed"), timeout_s=10, what="reclaimed")
    assert len(retries_of(store, running)) == 1 and row.dead_uuid == dead
    # acknowledged once decided (the commit and its event come first)
    wait_for(lambda: r.xpending(*RECOVERY)["pending"] == 0, what="acknowledged")


def test_disabled_recovery_proposes_nothing(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    running = execution(store, job(store, "j", retry_count=1), dead)
    w = RecoveryWorker(r, store, settings(redis_url, tmp_path, recover_enabled=False), consumer="w")
    v.die(dead)
    for _ in range(5):  # reads the change, scans: nothing to do
        w.step()
    assert r.xlen(KEYS.recovery) == 0 and recoveries(store) == []
    assert status(store, running) == "running"


def test_the_mass_failure_guard_holds_recoveries_until_released(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    a, b, c, live = (new_uuid() for _ in range(4))
    v = View(r)
    for member in (a, b, c, live):
        v.beat(member)
    runs = {m: execution(store, job(store, f"j-{m[:8]}", retry_count=1), m) for m in (a, b, c)}
    w = worker(threads, redis_url, store, settings(redis_url, tmp_path), "w1")
    for member in (a, b, c):  # 3 of 4 silent within one considerDead: the observer is suspect
        v.die(member)
    step_until(w, lambda: len(recoveries(store, "held")) == 3, "three recoveries held")
    assert {status(store, e) for e in runs.values()} == {"running"}
    assert len(r.hgetall(KEYS.takeover_held)) == 3
    release_guard(r, KEYS)
    step_until(w, lambda: len(recoveries(store, "committed")) == 3, "committed once released")
    assert {status(store, e) for e in runs.values()} == {"incomplete"}
    assert all(retries_of(store, e)[0].member_uuid == live for e in runs.values())
    assert r.hgetall(KEYS.takeover_held) == {}
