"""The ways of consuming a member's RQ queue considered for issue 13, on the same work.

Each candidate gets ``M`` executions of ``true`` already queued on a fresh member's RQ
queue and runs them all; printed: executions per second (M over the wall time until the
last outcome is recorded). Every candidate does the same per execution: the fenced start
in the store, the command, the outcome in the store.

* ``pool``: the node's consumer and pool (:mod:`workers.node.consumer`,
  :mod:`workers.node.pool`) with ``threads`` slots: batched pops and starts, outcomes
  written in batches — what ``qwc node`` runs.
* ``rq SimpleWorker``: RQ's non-forking worker, one job at a time (RQ's bookkeeping per
  job: registries, status, result), the store opened once.
* ``rq Worker``: RQ's default worker, forking a work horse per job (what the node ran
  before the pool), the store opened per job as the old task did.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable

import redis
from rq import Queue, SimpleWorker, Worker
from sqlalchemy import Engine, func, select

from schemas.tables import executions
from workers.node.consumer import Consumer
from workers.node.dispatcher import Dispatcher, queue_name
from workers.node.pool import ExecutionPool
from workers.node.recorder import Recorder
from workers.store import (
    NewExecution,
    Store,
    create_job,
    create_store_engine,
    finish_execution,
    insert_executions,
    start_execution,
)

__all__ = ["rq_task", "run"]

_DB_ENV = "QWC_BENCH_CANDIDATES_DATABASE_URL"
_engine: list[Engine] = []


def rq_task(execution_id: str, member_uuid: str, fresh_engine: bool) -> str:
    """The RQ candidates' task: fenced start, ``true``, outcome (the old task's work)."""
    if fresh_engine or not _engine:
        _engine[:] = [create_store_engine(os.environ[_DB_ENV])]
    engine = _engine[0]
    now_ms = time.time_ns() // 1_000_000
    if not start_execution(engine, execution_id, now_ms=now_ms, member_uuid=member_uuid):
        return "skipped"
    code = subprocess.run(["true"], check=False).returncode
    status = "succeeded" if code == 0 else "failed"
    finish_execution(engine, execution_id, status=status, now_ms=time.time_ns() // 1_000_000)
    if fresh_engine:
        engine.dispose()
    return status


def _prepare(store: Store, member: str, count: int) -> list[str]:
    job = create_job(
        store,
        project=f"candidates-{member[:8]}",
        group_name="",
        name="true",
        command=["true"],
        schedule=None,
        modified_by=member,
        now_ms=1,
    ).id
    new = [
        NewExecution(str(uuid.uuid4()), job, member, fire_ms=1, trigger="manual")
        for _ in range(count)
    ]
    insert_executions(store, new, now_ms=1)
    return [n.id for n in new]


def _done(store: Store, member: str) -> int:
    e = executions
    stmt = select(func.count()).where(e.c.member_uuid == member, e.c.ended_ms.is_not(None))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _pool(store: Store, client: redis.Redis, member: str, count: int, threads: int) -> float:
    clock = lambda: time.time_ns() // 1_000_000  # noqa: E731
    stop = threading.Event()
    queue = Queue(queue_name(member), connection=client)
    Dispatcher(store, queue, member_uuid=member, stop=stop, clock_ms=clock).dispatch(clock())
    recorder = Recorder(store, clock_ms=clock)
    consumer: list[Consumer] = []
    pool = ExecutionPool(threads, record=recorder.put, on_free=lambda: consumer[0].slot_freed())
    consumer.append(
        Consumer(
            client,
            queue.key,
            store,
            pool,
            member_uuid=member,
            stop=stop,
            clock_ms=clock,
            poll_s=0.05,
        )
    )
    t0 = time.monotonic()
    thread = threading.Thread(target=consumer[0].run, daemon=True)
    thread.start()
    while _done(store, member) < count:
        time.sleep(0.01)
    took = time.monotonic() - t0
    stop.set()
    consumer[0].wake()
    thread.join(5)
    pool.close()
    recorder.close()
    return took


def _rq(worker_class: type[Worker], fresh_engine: bool) -> Callable[..., float]:
    def run_rq(store: Store, client: redis.Redis, member: str, count: int, _threads: int) -> float:
        queue = Queue(f"candidates-{member}", connection=client)
        ids = [row for row in _ids(store, member)]
        datas = [
            Queue.prepare_data(rq_task, args=(i, member, fresh_engine), job_id=i, timeout=-1)
            for i in ids
        ]
        pipe = client.pipeline()
        queue.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
        t0 = time.monotonic()
        worker_class([queue], connection=client).work(burst=True, logging_level="WARNING")
        took = time.monotonic() - t0
        assert _done(store, member) == count, (_done(store, member), count)
        return took

    return run_rq


def _ids(store: Store, member: str) -> list[str]:
    e = executions
    stmt = select(e.c.id).where(e.c.member_uuid == member).order_by(e.c.id)
    with store.engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


def run(db_url: str, redis_url: str, count: int, threads: int) -> None:
    """Print each candidate's executions per second on ``count`` queued executions."""
    os.environ[_DB_ENV] = db_url
    engine = create_store_engine(db_url)
    store = Store(engine)
    client = redis.Redis.from_url(redis_url)
    logging.getLogger("rq").setLevel(logging.WARNING)
    candidates: list[tuple[str, Callable[..., float]]] = [
        (f"pool ({threads} slots)", _pool),
        ("rq SimpleWorker", _rq(SimpleWorker, fresh_engine=False)),
        ("rq Worker (fork per job)", _rq(Worker, fresh_engine=True)),
    ]
    print(f"-- consuming {count} queued executions of `true` (one member's queue)")
    try:
        for name, candidate in candidates:
            member = str(uuid.uuid4())
            _prepare(store, member, count)
            took = candidate(store, client, member, count, threads)
            print(f"   {name:<26}: {count / took:8.1f} executions/s")
    finally:
        client.close()
        store.close()
