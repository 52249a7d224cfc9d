"""A member's parts in-process (``parts``), wired as ``qwc node`` wires them, with a moved
clock, on real Redis and a real database: the scheduling loop, the dispatcher, the consumer,
the pool (real commands) and the recorder. Tests step them by hand."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from rq import Queue

from producers.heartbeat import HeartbeatProducer
from workers.node.consumer import Consumer
from workers.node.dispatcher import Dispatcher, queue_name
from workers.node.member import Member, MemberConfig
from workers.node.pool import ExecutionPool
from workers.node.recorder import Recorder
from workers.store import Store, create_job, insert_execution

__all__ = ["ME", "OTHER", "T0", "Clock", "Parts", "job", "manual", "parts"]

ME = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"
T0 = 1_767_225_600_250  # 2026-01-01 00:00:00.250 UTC


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Parts:
    member: Member
    dispatcher: Dispatcher
    consumer: Consumer
    pool: ExecutionPool
    recorder: Recorder
    clock: Clock
    queue: Queue
    producer: HeartbeatProducer

    def step(self) -> None:
        """One loop pass and one dispatcher pass at the clock's time."""
        self.member.step()
        self.dispatcher.step(self.clock.now_ms)

    def run_queued(self) -> int:
        """Let the consumer take what it can; wait until the pool and recorder are done."""
        taken = self.consumer.step()
        assert self.pool.wait_idle(10)
        self.flush()
        return taken

    def flush(self) -> None:
        """Write every outcome the pool handed over so far."""
        self.recorder.close()
        self.recorder = Recorder(self.member.store, clock_ms=self.clock)
        self.pool._record = self.recorder.put


@pytest.fixture
def parts(store: Store, r: redis.Redis) -> Iterator[Parts]:
    """Two slots, a 0.5 s grace; the loop reloads every (moved) second. A job's timeout
    runs in real time from its start."""
    clock = Clock(T0)
    stop = threading.Event()
    producer = HeartbeatProducer(r, uuid=ME, name="me", interval_s=1.0)
    queue = Queue(queue_name(ME), connection=r)
    recorder = Recorder(store, clock_ms=clock)
    pool = ExecutionPool(2, record=recorder.put, grace_s=0.5, clock_ms=clock)
    consumer = Consumer(r, queue.key, store, pool, member_uuid=ME, stop=stop, clock_ms=clock)
    dispatcher = Dispatcher(
        store,
        queue,
        member_uuid=ME,
        stop=stop,
        clock_ms=clock,
        held=pool.held_ids,
    )
    member = Member(
        MemberConfig(ME, 1.0),  # reload every 1000 ms
        store=store,
        producer=producer,
        stop=stop,
        clock_ms=clock,
        sleep_s=lambda _s: None,  # the test moves the clock itself
        on_fired=dispatcher.wake,
        on_replaced=pool.end_replaced,
    )
    p = Parts(member, dispatcher, consumer, pool, recorder, clock, queue, producer)
    try:
        yield p
    finally:
        for eid in pool.running_ids():
            pool.end(eid, None, "teardown")
        pool.close()
        p.recorder.close()


def job(
    store: Store, command: list[str], schedule: str | None = "* * * * * *", **kw: object
) -> str:
    """A job of ``ME`` (every second by default), created 10 s before T0."""
    return create_job(
        store,
        project="ops",
        group_name="",
        name=str(kw.pop("name", "tick")),
        command=command,
        schedule=schedule,
        modified_by=ME,
        now_ms=T0 - 10_000,
        **kw,  # type: ignore[arg-type]
    ).id


def manual(store: Store, job_id: str, member: str = ME, fire_ms: int = T0) -> str:
    """A ``scheduled`` execution of ``job_id`` on ``member``, inserted directly."""
    return insert_execution(
        store, job_id=job_id, member_uuid=member, trigger="manual", fire_ms=fire_ms, now_ms=T0
    )
