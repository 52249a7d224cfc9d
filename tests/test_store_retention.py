"""Execution retention on a moved clock (SQLite and PostgreSQL): old ended executions go in
small batches; running, scheduled and recent ones stay; one replica cleans per period."""

from __future__ import annotations

import threading

import pytest
import redis

from schemas.keys import Keys
from workers.recovery.retention import RetentionCleaner
from workers.store import (
    Store,
    create_job,
    delete_expired_executions,
    expired_before_ms,
    finish_execution,
    fire_job,
    get_job,
    insert_execution,
    list_executions,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
DAY_MS = 86_400_000
NOW_MS = 400 * DAY_MS  # the moved clock: day 400 of the epoch


def _job(store: Store, name: str = "j") -> str:
    return create_job(
        store, project="p", group_name="", name=name, command=["true"],
        schedule="* * * * *", modified_by=A, now_ms=1, concurrency="allow",
    ).id  # fmt: skip


def _ended(store: Store, job_id: str, *, day: float, status: str = "succeeded") -> str:
    """An execution of ``job_id`` that ended on ``day`` (created the same day)."""
    at_ms = round(day * DAY_MS)
    execution_id = insert_execution(
        store, job_id=job_id, member_uuid=A, trigger="schedule", fire_ms=at_ms, now_ms=at_ms
    )
    assert finish_execution(store, execution_id, status=status, now_ms=at_ms)
    return execution_id


@pytest.mark.parametrize(
    ("now_ms", "days", "expected"),
    [(NOW_MS, 30, NOW_MS - 30 * DAY_MS), (NOW_MS, 0.5, NOW_MS - DAY_MS // 2), (NOW_MS, 0, None)],
)
def test_expired_before(now_ms: int, days: float, expected: int | None) -> None:
    assert expired_before_ms(now_ms, days) == expected


def test_old_ended_executions_go_in_batches_oldest_first(store: Store) -> None:
    job_id = _job(store)
    old = [_ended(store, job_id, day=300 + i / 10, status=s) for i, s in enumerate(
        ("succeeded", "failed", "aborted", "incomplete", "timedout", "skipped", "succeeded")
    )]  # fmt: skip
    recent = _ended(store, job_id, day=390)
    cutoff = expired_before_ms(NOW_MS, 30)
    assert cutoff is not None
    assert delete_expired_executions(store, ended_before_ms=cutoff, limit=3) == 3
    left = {e.id for e in list_executions(store, job_id=job_id)}
    assert left == set(old[3:]) | {recent}  # the three oldest went first
    assert delete_expired_executions(store, ended_before_ms=cutoff, limit=3) == 3
    assert delete_expired_executions(store, ended_before_ms=cutoff, limit=3) == 1
    assert delete_expired_executions(store, ended_before_ms=cutoff, limit=3) == 0
    assert [e.id for e in list_executions(store, job_id=job_id)] == [recent]


def test_running_and_scheduled_executions_are_never_deleted(store: Store) -> None:
    """Even created long ago: a run still going (or waiting) has no end to expire from."""
    job_id = _job(store)
    long_ago = 10 * DAY_MS
    running = insert_execution(
        store, job_id=job_id, member_uuid=A, trigger="schedule", fire_ms=long_ago,
        now_ms=long_ago, status="running",
    )  # fmt: skip
    waiting = insert_execution(
        store, job_id=job_id, member_uuid=A, trigger="retry", fire_ms=long_ago, now_ms=long_ago
    )
    assert delete_expired_executions(store, ended_before_ms=NOW_MS) == 0
    assert {e.id for e in list_executions(store, job_id=job_id)} == {running, waiting}


def test_the_fence_needs_no_old_execution(store: Store) -> None:
    """The fire fence keeps its last claimed time on the job: deleting every execution of a
    job does not let an old fire time be fired again."""
    job_id = _job(store)
    fired = fire_job(store, job_id=job_id, member_uuid=A, owner_epoch=1, fire_ms=60_000, now_ms=1)
    assert fired is not None
    finish_execution(store, fired, status="succeeded", now_ms=60_001)
    assert delete_expired_executions(store, ended_before_ms=NOW_MS) == 1
    assert get_job(store, job_id).last_fire_ms == 60_000
    again = fire_job(store, job_id=job_id, member_uuid=A, owner_epoch=1, fire_ms=60_000, now_ms=2)
    assert again is None


def test_bad_limit_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        delete_expired_executions(store, ended_before_ms=NOW_MS, limit=0)


def _cleaner(
    r: redis.Redis, store: Store, owner: str = "recovery-1", **kw: int
) -> RetentionCleaner:
    options = {"batch_rows": 2, "batches_per_pass": 2, "every_ms": 3_600_000} | kw
    return RetentionCleaner(r, store, Keys(), retention_days=30, owner=owner, **options)


def test_the_cleaner_drains_a_backlog_pass_after_pass_then_waits_an_hour(
    r: redis.Redis, store: Store
) -> None:
    job_id = _job(store)
    for i in range(7):
        _ended(store, job_id, day=300 + i / 10)
    keep = _ended(store, job_id, day=380)
    cleaner = _cleaner(r, store)
    first = cleaner.step(NOW_MS)
    assert (first.ran, first.deleted, first.more) == (True, 4, True)
    assert not r.exists(Keys().retention_pass)  # more left: the next pass may start anywhere
    second = cleaner.step(NOW_MS + 500)
    assert (second.ran, second.deleted, second.more) == (True, 3, False)
    assert [e.id for e in list_executions(store, job_id=job_id)] == [keep]
    assert r.get(Keys().retention_pass) == b"recovery-1"  # nothing left: held for the period
    assert cleaner.step(NOW_MS + 600).ran is False
    # 51 days later (the key's hour long gone) the execution of day 380 has expired too
    r.delete(Keys().retention_pass)
    later_ms = NOW_MS + 51 * DAY_MS
    assert cleaner.step(later_ms).deleted == 1
    assert list_executions(store, job_id=job_id) == []


def test_one_replica_cleans_per_period(r: redis.Redis, store: Store) -> None:
    job_id = _job(store)
    _ended(store, job_id, day=300)
    one, other = _cleaner(r, store, "recovery-1"), _cleaner(r, store, "recovery-2")
    assert one.step(NOW_MS).deleted == 1
    assert other.step(NOW_MS + 1).ran is False  # the key says recovery-1 cleaned this hour
    _ended(store, job_id, day=301)
    r.delete(Keys().retention_pass)  # the period ended (the key expired)
    assert other.step(NOW_MS + 3_600_001).deleted == 1


def test_retention_zero_keeps_everything(r: redis.Redis, store: Store) -> None:
    job_id = _job(store)
    _ended(store, job_id, day=1)
    cleaner = RetentionCleaner(r, store, Keys(), retention_days=0, owner="x")
    assert cleaner.step(NOW_MS).ran is False
    assert len(list_executions(store, job_id=job_id)) == 1


def test_the_cleaner_thread_stops_when_told(r: redis.Redis, store: Store) -> None:
    job_id = _job(store)
    _ended(store, job_id, day=1)  # the Redis clock is now: day 1 is long past
    stop = threading.Event()
    thread = _cleaner(r, store).start(stop)
    try:
        for _ in range(200):  # polled, 10 s at most
            if not list_executions(store, job_id=job_id):
                break
            stop.wait(0.05)
        assert list_executions(store, job_id=job_id) == []
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
