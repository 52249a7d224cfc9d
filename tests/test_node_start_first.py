"""The start path first: while executions wait on a member's queue for a slot, its consumer
is busy, gathers freed slots into bigger passes, and the background writers (the recorder,
the event sender) hold their batches; an outcome written late still carries the time its
execution ended. On real Redis and a real
database, in-process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from schemas.keys import Keys
from schemas.messages import Event
from tests.cluster import wait_for
from tests.node_parts import ME, T0, Parts, job, manual
from workers.node.consumer import LONG_RUN_MS, Consumer, Quiet
from workers.node.pool import ExecutionPool
from workers.node.recorder import Recorder
from workers.node.runner import Ended
from workers.notify.sender import EventSender
from workers.store import Store, get_execution, start_executions


class Hold:
    """A writer's ``hold``: records that it was called, then waits for ``quiet``."""

    def __init__(self, quiet: Quiet) -> None:
        self.quiet = quiet
        self.called = threading.Event()

    def __call__(self) -> None:
        self.called.set()
        assert self.quiet.hold(10.0)


def test_the_consumer_is_busy_while_executions_wait_for_a_slot(parts: Parts, store: Store) -> None:
    sleeper = job(store, ["sleep", "30"], schedule=None)
    for _ in range(3):
        manual(store, sleeper)
    parts.dispatcher.step(T0)
    quiet = parts.consumer.quiet
    parts.consumer.wake()  # the dispatcher queued: busy until the queue is seen empty
    assert not quiet.is_set()
    assert parts.consumer.step() == 2  # two slots, both taken: one may wait still
    assert not quiet.is_set()
    first, second = sorted(parts.pool.running_ids())
    assert parts.pool.end(first, None, "test")
    wait_for(lambda: parts.pool.free_slots() == 1, what="a slot freed")
    assert parts.consumer.step() == 1  # one free slot, one taken: more may wait
    assert not quiet.is_set()
    assert parts.pool.end(second, None, "test")
    wait_for(lambda: parts.pool.free_slots() == 1, what="a slot freed")
    assert parts.consumer.step() == 0  # the queue is empty: quiet
    assert quiet.is_set()
    parts.consumer._wake.clear()
    parts.consumer.slot_freed()  # nothing waits: no pop, no round trip
    assert not parts.consumer._wake.is_set()
    parts.consumer.wake()
    assert parts.consumer._wake.is_set() and not quiet.is_set()


def test_the_last_pass_is_quiet_only_once_it_handed_its_executions_over(
    parts: Parts, store: Store, r: redis.Redis
) -> None:
    manual(store, job(store, ["true"], schedule=None))
    parts.dispatcher.step(T0)
    quiet, seen = parts.consumer.quiet, []
    parts.consumer.wake()
    # A writer let go at the pop would take the store's write turn before this pass's start.
    quiet_at_start = Consumer(
        r,
        parts.consumer.queue_key,
        store,
        parts.pool,
        member_uuid=ME,
        stop=parts.consumer.stop,
        clock_ms=lambda: T0,
        on_started=lambda started: seen.append(quiet.is_set()),
        quiet=quiet,
    )
    assert quiet_at_start.step() == 1  # two free slots, one popped: the queue is empty
    assert seen == [False]
    assert quiet.is_set()


def test_a_held_recorder_writes_each_outcome_with_the_time_its_execution_ended(
    parts: Parts, store: Store
) -> None:
    execution_id = manual(store, job(store, ["true"], schedule=None))
    (execution,) = start_executions(store, [execution_id], member_uuid=ME, now_ms=T0 + 5)
    quiet = Quiet()
    quiet.clear()  # the start path is busy
    hold = Hold(quiet)
    recorder = Recorder(store, clock_ms=lambda: T0 + 5_000, hold=hold)
    try:
        recorder.put(Ended(execution, "succeeded", "", 0, ended_ms=T0 + 100))
        assert hold.called.wait(10)
        assert get_execution(store, execution_id).status == "running"  # held
        quiet.set()
    finally:
        recorder.close()
    row = get_execution(store, execution_id)
    assert (row.status, row.ended_ms) == ("succeeded", T0 + 100)  # not T0 + 5_000


def test_the_pool_stamps_the_time_an_execution_ended(parts: Parts, store: Store) -> None:
    ended: list[Ended] = []
    pool = ExecutionPool(1, record=ended.append, clock_ms=lambda: T0 + 777)
    execution_id = manual(store, job(store, ["true"], schedule=None))
    (execution,) = start_executions(store, [execution_id], member_uuid=ME, now_ms=T0 + 5)
    pool.submit(execution)
    assert pool.wait_idle(10)
    pool.close()
    assert [(e.status, e.ended_ms) for e in ended] == [("succeeded", T0 + 777)]


def test_a_held_event_sender_appends_once_the_start_path_is_quiet(r: redis.Redis) -> None:
    keys = Keys()
    quiet = Quiet()
    quiet.clear()
    hold = Hold(quiet)
    sender = EventSender(r, keys, hold=hold)
    try:
        sender.send(Event(id="takeover.committed:p1", kind="takeover.committed", at_ms=1))
        assert hold.called.wait(10)
        assert r.xlen(keys.events) == 0  # held
        quiet.set()
    finally:
        sender.close()
    assert r.xlen(keys.events) == 1


@dataclass
class Busy:
    """A pool of four slots running four ``sleep 30``, more queued, and its consumer (a
    gather of up to 10 s)."""

    pool: ExecutionPool
    consumer: Consumer


@pytest.fixture
def busy(parts: Parts, store: Store, r: redis.Redis) -> Iterator[Busy]:
    pool = ExecutionPool(4, record=lambda _ended: None, grace_s=0.5)
    consumer = Consumer(
        r, parts.queue.key, store, pool, member_uuid=ME, stop=threading.Event(),
        clock_ms=parts.clock, gather_s=10.0,
    )  # fmt: skip
    try:
        sleeper = job(store, ["sleep", "30"], schedule=None)
        for _ in range(8):
            manual(store, sleeper)
        parts.dispatcher.step(T0)
        consumer.wake()
        assert consumer.step() == 4  # every slot: four wait still
        yield Busy(pool, consumer)
    finally:
        for eid in pool.running_ids():
            pool.end(eid, None, "teardown")
        pool.close()


def test_while_executions_wait_a_pass_gathers_most_of_the_slots(busy: Busy) -> None:
    pool = busy.pool
    first, second, third, _ = sorted(pool.running_ids())
    assert pool.end(first, None, "test")
    wait_for(lambda: pool.free_slots() == 1, what="a slot freed")
    threading.Timer(0.1, lambda: pool.end(second, None, "test")).start()
    threading.Timer(0.2, lambda: pool.end(third, None, "test")).start()
    assert busy.consumer.step() == 3  # waited for 3 of the 4 (GATHER_SHARE): one pass


def test_a_pass_never_waits_for_slots_whose_execution_runs_long(
    busy: Busy, parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three of four slots hold executions started LONG_RUN_MS ago or more: the pass takes
    the free slot at once instead of waiting the gather for slots that will hardly end."""
    pool = busy.pool
    assert pool.end(sorted(pool.running_ids())[0], None, "test")
    wait_for(lambda: pool.free_slots() == 1, what="a slot freed")
    parts.clock.now_ms = T0 + LONG_RUN_MS
    waits: list[int] = []
    real_wait = pool.wait_free
    monkeypatch.setattr(pool, "wait_free", lambda n, s: waits.append(n) or real_wait(n, s))
    assert busy.consumer.step() == 1
    assert waits == []
