"""The member's parts in-process, with a moved clock, on real Redis and a real database: the
loop fires through the fence (SQL only), the dispatcher queues due executions on the RQ
queue and re-queues lost ones, the consumer takes only as many as there are free slots,
starts them through the start fence and the pool runs them; outcomes and retries are
recorded."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job
from sqlalchemy import event

from producers.heartbeat import HeartbeatProducer
from schemas.codec import decode_as
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from tests.node_parts import ME, OTHER, T0, Parts, job, manual
from workers.node import dispatcher as dispatcher_module
from workers.node.consumer import Consumer
from workers.node.dispatcher import (
    _TASK,
    REQUEUE_AFTER_MS,
    REQUEUE_CHECK_MS,
    RQ_JOB_TTL_S,
    Dispatcher,
    enqueue_ids,
    enqueue_script,
)
from workers.node.member import FIRE_AHEAD_MS, Member, MemberConfig
from workers.store import (
    ExecutionRow,
    StartedExecution,
    Store,
    abort_execution,
    finish_execution,
    get_execution,
    get_job,
    list_executions,
    move_scheduled_executions,
    reassign_jobs,
    start_execution,
)


def test_a_due_time_is_fired_queued_started_and_recorded(store: Store, parts: Parts) -> None:
    job_id = job(store, [sys.executable, "-c", "print('hi'); raise SystemExit(3)"])
    parts.step()
    assert list_executions(store, job_id=job_id) == []
    parts.clock.now_ms = T0 + 750  # 00:00:01.000
    parts.step()
    (execution,) = list_executions(store, job_id=job_id)
    assert (execution.status, execution.fire_ms, execution.owner_epoch) == (
        "scheduled",
        T0 + 750,
        1,
    )
    assert execution.queued_ms == T0 + 750
    assert get_job(store, job_id).next_fire_ms == T0 + 1750
    assert parts.queue.job_ids == [execution.id]
    rq_job = parts.queue.fetch_job(execution.id)
    assert rq_job is not None and rq_job.args == ()  # its id is the execution's: no command
    assert rq_job.func_name == "workers.node.dispatcher.not_for_rq_workers"
    assert rq_job.description == f"job {job_id} schedule {T0 + 750}"
    assert parts.run_queued() == 1
    assert parts.queue.job_ids == [] and not parts.queue.connection.exists(rq_job.key)
    done = get_execution(store, execution.id)
    assert (done.status, done.exit_code, done.output) == ("failed", 3, "hi\n")
    assert done.rq_job_id == execution.id and done.started_ms == T0 + 750


def test_the_loop_never_touches_redis(store: Store, parts: Parts) -> None:
    """Firing goes through SQL alone: with its Redis unreachable the loop still fires."""
    job_id = job(store, ["true"])
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0")
    parts.member.producer = HeartbeatProducer(unreachable, uuid=ME, name="me", interval_s=1.0)
    parts.member.step()
    parts.clock.now_ms = T0 + 750
    parts.member.step()
    parts.clock.now_ms = T0 + 1750
    parts.member.step()
    assert [e.fire_ms for e in list_executions(store, job_id=job_id)] == [T0 + 1750, T0 + 750]
    unreachable.close()


def test_the_fence_refuses_a_lost_job_logged_once(
    store: Store, parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = job(store, ["true"])
    parts.step()
    reassign_jobs(store, from_owner=ME, to_owner=OTHER)
    caplog.set_level(logging.INFO, logger="workers.node.member")
    for now_ms in (T0 + 750, T0 + 1750, T0 + 2750):  # due before the next reload, then gone
        parts.clock.now_ms = now_ms
        parts.step()
    assert list_executions(store, job_id=job_id) == []
    assert parts.queue.count == 0
    lost = [r.getMessage() for r in caplog.records if "lost job" in r.getMessage()]
    assert lost == [f"member {ME}: lost job {job_id} (epoch 1)"]
    assert parts.member.schedule.plans == {}


def test_a_job_taken_back_is_scheduled_again_after_the_last_claimed_time(
    store: Store, parts: Parts
) -> None:
    job_id = job(store, ["true"])
    parts.step()
    reassign_jobs(store, from_owner=ME, to_owner=OTHER)
    parts.clock.now_ms = T0 + 1000  # reload: lost (before its due 00:00:01 was fired)
    parts.step()
    assert parts.member.schedule.plans == {}
    reassign_jobs(store, from_owner=OTHER, to_owner=ME)
    parts.clock.now_ms = T0 + 2000  # reload: owned again at epoch 3, seen at 00:00:02.250
    parts.step()
    assert parts.member.schedule.plans[job_id].owner_epoch == 3
    assert list_executions(store, job_id=job_id) == []
    parts.clock.now_ms = T0 + 2750
    parts.step()
    (execution,) = list_executions(store, job_id=job_id)
    assert (execution.fire_ms, execution.owner_epoch) == (T0 + 2750, 3)


def test_several_due_jobs_are_claimed_in_one_pass(store: Store, parts: Parts) -> None:
    jobs = [job(store, ["true"], name=f"j{i}") for i in range(5)]
    parts.step()
    parts.clock.now_ms = T0 + 750
    fired = parts.member.fire(parts.member.schedule.due(T0 + 750).fires, T0 + 750)
    assert sorted(f.job_id for f in fired) == sorted(jobs)
    assert len(list_executions(store)) == 5


def test_an_execution_not_queued_is_queued_on_the_next_pass(store: Store, parts: Parts) -> None:
    job_id = job(store, ["true"])
    parts.member.step()
    good_queue = parts.queue
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0")
    parts.dispatcher.queue = Queue(good_queue.name, connection=unreachable)
    parts.clock.now_ms = T0 + 750
    parts.member.step()  # committed through the fence; Redis refuses the enqueue
    with pytest.raises(redis.ConnectionError):
        parts.dispatcher.step(parts.clock.now_ms)
    unreachable.close()
    (execution,) = list_executions(store, job_id=job_id)
    assert execution.queued_ms is None
    parts.dispatcher.queue = good_queue
    parts.clock.now_ms = T0 + 800
    parts.dispatcher.step(parts.clock.now_ms)
    assert good_queue.job_ids == [execution.id]


def test_a_queued_execution_whose_rq_job_was_lost_is_queued_again(
    store: Store, parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis failover may drop the enqueue the store already records as queued: the member
    finds the execution still scheduled, not on its queue, not held by its pool, and
    queues it again; one still waiting on the queue is left alone."""
    job_id = job(store, ["true"], schedule="0 0 1 1 *")
    lost, waiting = (manual(store, job_id) for _ in range(2))
    parts.step()
    assert sorted(parts.queue.job_ids) == sorted([lost, waiting])
    parts.queue.connection.lrem(parts.queue.key, 0, lost)  # the write the failover dropped
    parts.clock.now_ms = T0 + REQUEUE_AFTER_MS  # not yet: queued exactly that long ago
    parts.dispatcher.step(parts.clock.now_ms)
    assert parts.queue.job_ids == [waiting]
    parts.clock.now_ms = T0 + REQUEUE_AFTER_MS + REQUEUE_CHECK_MS
    with caplog.at_level(logging.WARNING, logger="workers.node.dispatcher"):
        parts.dispatcher.step(parts.clock.now_ms)
    assert parts.queue.job_ids == [waiting, lost]
    assert get_execution(store, lost).queued_ms == parts.clock.now_ms
    assert get_execution(store, waiting).queued_ms == T0
    assert f"queueing them again: {lost}" in caplog.text


def test_an_execution_the_pool_runs_is_never_taken_for_lost(store: Store, parts: Parts) -> None:
    job_id = job(store, [sys.executable, "-c", "import time; time.sleep(60)"], "0 0 1 1 *")
    running = manual(store, job_id)
    parts.step()
    assert parts.consumer.step() == 1
    assert get_execution(store, running).status == "running"
    assert running in parts.pool.running_ids()
    parts.clock.now_ms = T0 + REQUEUE_AFTER_MS + REQUEUE_CHECK_MS
    assert parts.dispatcher.requeue_lost(parts.clock.now_ms) == []


def test_executions_assigned_by_others_are_queued_when_due_and_once(
    store: Store, parts: Parts
) -> None:
    job_id = job(store, ["true"], schedule="0 0 1 1 *")
    later = manual(store, job_id, fire_ms=T0 + 500)
    elsewhere = manual(store, job_id, member=OTHER)
    assert parts.dispatcher.step(T0) == 500  # wakes at its fire time, not a poll later
    assert parts.queue.job_ids == []
    parts.dispatcher.step(T0 + 500)
    assert parts.queue.job_ids == [later]
    assert get_execution(store, later).queued_ms == T0 + 500
    parts.dispatcher.step(T0 + 1600)
    assert parts.queue.job_ids == [later]  # not twice
    assert get_execution(store, elsewhere).queued_ms is None


def test_the_consumer_takes_only_what_free_slots_can_run_and_the_rest_waits_in_order(
    store: Store, parts: Parts
) -> None:
    job_id = job(store, [sys.executable, "-c", "import time; time.sleep(60)"], "0 0 1 1 *")
    ids = [manual(store, job_id, fire_ms=T0 + i) for i in range(5)]
    parts.dispatcher.step(T0 + 10)
    assert parts.queue.job_ids == ids
    assert parts.consumer.step() == 2  # two slots
    assert parts.consumer.step() == 0  # none free: nothing more is taken
    assert parts.queue.job_ids == ids[2:]  # waiting, in order, on the queue
    assert [get_execution(store, i).status for i in ids] == ["running"] * 2 + ["scheduled"] * 3


def test_a_failed_execution_is_retried_until_its_count(store: Store, parts: Parts) -> None:
    job_id = job(
        store,
        [sys.executable, "-c", "raise SystemExit(1)"],
        schedule=None,
        retry_count=1,
        retry_delay_s=2.5,
    )
    first = manual(store, job_id)
    parts.dispatcher.step(T0)
    parts.run_queued()
    (retry,) = list_executions(store, retry_of=first)
    ended_ms = get_execution(store, first).ended_ms
    assert ended_ms is not None
    assert (retry.attempt, retry.trigger, retry.member_uuid, retry.status) == (
        2,
        "retry",
        ME,
        "scheduled",
    )
    assert retry.fire_ms == ended_ms + 2500
    parts.dispatcher.step(retry.fire_ms)
    parts.run_queued()
    assert get_execution(store, retry.id).status == "failed"
    assert [e.id for e in list_executions(store, retry_of=first)] == [retry.id]  # count spent


def test_an_execution_moved_to_another_member_is_not_run_here(store: Store, parts: Parts) -> None:
    job_id = job(store, ["true"], schedule="0 0 1 1 *")
    execution_id = manual(store, job_id)
    parts.dispatcher.step(T0)
    move_scheduled_executions(store, from_member=ME, to_member=OTHER)
    assert parts.run_queued() == 1  # popped, refused by the start fence
    assert get_execution(store, execution_id).status == "scheduled"
    assert not parts.queue.connection.exists(Job.key_for(execution_id))


def test_a_stopped_member_fires_nothing(store: Store, parts: Parts) -> None:
    job_id = job(store, ["true"])
    parts.member.step()
    parts.member.stop.set()
    parts.clock.now_ms = T0 + 750
    parts.member.step()
    assert list_executions(store, job_id=job_id) == []


def test_running_executions_are_sent_with_the_heartbeats(
    store: Store, r: redis.Redis, parts: Parts
) -> None:
    job_id = job(store, ["true"], schedule="0 0 1 1 *")
    running = manual(store, job_id)
    manual(store, job_id)
    assert start_execution(store, running, now_ms=T0)
    parts.member.step()
    parts.producer.beat()
    ((_, fields),) = r.xrange(Keys().heartbeats)
    assert decode_as(fields[MESSAGE_FIELD], Heartbeat).running == (running,)


def test_a_fire_once_job_behind_its_times_is_claimed_once_as_a_catchup(
    store: Store, parts: Parts
) -> None:
    """The member's batched claim records what the scheduler decided: several due times of
    a fire_once job (the member fell behind) make one execution at the newest, trigger
    ``catchup``, with the missed times and their count and span as its reason."""
    job_id = job(store, ["true"], misfire="fire_once", misfire_grace_s=60.0)
    parts.step()  # planned: next fire T0 + 750
    parts.clock.now_ms = T0 + 3750  # 4 times due at once
    parts.member.step()
    (e,) = list_executions(store, job_id=job_id)
    missed = tuple(T0 + 750 + 1000 * i for i in range(4))
    assert (e.trigger, e.fire_ms, e.missed_ms, e.status) == (
        "catchup",
        missed[-1],
        missed,
        "scheduled",
    )
    assert e.reason == (
        "catch-up of 4 missed fire time(s): 2026-01-01T00:00:01+00:00 to 2026-01-01T00:00:04+00:00"
    )
    assert get_job(store, job_id).next_fire_ms == missed[-1] + 1000


def test_the_queued_jobs_are_what_rq_itself_writes(parts: Parts) -> None:
    """One call queues a chunk; each job's hash is field for field what RQ's own
    ``enqueue_many`` writes for it (but the times), in order, with its expiry."""
    queue = parts.queue
    data = Queue.prepare_data(
        _TASK, args=(), timeout=-1, ttl=RQ_JOB_TTL_S, job_id="by-rq", description="d0"
    )
    pipe = queue.connection.pipeline()
    queue.enqueue_many([data], pipeline=pipe)
    pipe.execute()
    script = enqueue_script(queue.connection)
    assert enqueue_ids(script, queue, [("e1", "d1"), ("e2", "d2")]) == 2
    assert enqueue_ids(script, queue, []) == 0
    assert queue.job_ids == ["by-rq", "e1", "e2"]
    conn = queue.connection
    by_rq, ours = conn.hgetall(Job.key_for("by-rq")), conn.hgetall(Job.key_for("e2"))
    times = {b"created_at", b"enqueued_at", b"description"}
    assert set(ours) == set(by_rq)
    assert {k: v for k, v in ours.items() if k not in times} == {
        k: v for k, v in by_rq.items() if k not in times
    }
    assert ours[b"description"] == b"d2" and 0 < conn.ttl(Job.key_for("e2")) <= RQ_JOB_TTL_S
    fetched = Job.fetch("e1", connection=conn)
    assert (fetched.origin, fetched.get_status(), fetched.args) == (queue.name, "queued", ())
    assert queue.key.encode() in conn.smembers(Queue.redis_queues_keys)


def test_a_schedule_that_fires_no_more_ends_its_plan_and_the_loop_goes_on(
    store: Store, parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    """A Quartz year field ends a schedule: its last time is fired (no next time planned)
    and the loop keeps firing the member's other jobs (it used to fail every pass)."""
    caplog.set_level(logging.INFO, logger="workers.node.member")
    ending = job(store, ["true"], schedule="0-1 0 0 1 1 ? 2026", name="ends")  # last: 00:00:01
    other = job(store, ["true"], name="goes-on")
    parts.member.step()
    for now_ms in (T0 + 750, T0 + 1_750, T0 + 2_750):
        parts.clock.now_ms = now_ms
        parts.member.step()
    assert [e.fire_ms for e in list_executions(store, job_id=ending)] == [T0 + 750]
    assert get_job(store, ending).next_fire_ms is None
    fired = sorted(e.fire_ms for e in list_executions(store, job_id=other))
    assert fired == [T0 + 750, T0 + 1_750, T0 + 2_750]
    assert f"job {ending} fired the last time of its schedule" in caplog.text


def test_a_fire_is_claimed_ahead_of_its_time_and_queued_at_it(store: Store, parts: Parts) -> None:
    job_id = job(store, ["true"])
    parts.step()  # T0: the next time, T0 + 750, is further than the fire-ahead window
    assert list_executions(store, job_id=job_id) == []
    ahead_ms = T0 + 750 - FIRE_AHEAD_MS
    parts.clock.now_ms = ahead_ms
    parts.step()
    (execution,) = list_executions(store, job_id=job_id)
    assert (execution.status, execution.fire_ms, execution.created_ms) == (
        "scheduled",
        T0 + 750,
        ahead_ms,
    )
    assert parts.queue.job_ids == []  # not before its time, but marked queued at it ahead:
    assert execution.queued_ms == T0 + 750  # nothing is written when it is due
    assert get_job(store, job_id).next_fire_ms == T0 + 1750
    parts.clock.now_ms = T0 + 749
    parts.step()
    assert parts.queue.job_ids == [] and len(list_executions(store, job_id=job_id)) == 1
    parts.clock.now_ms = T0 + 750
    parts.step()
    assert parts.queue.job_ids == [execution.id]
    assert get_execution(store, execution.id).queued_ms == T0 + 750
    assert parts.run_queued() == 1
    assert get_execution(store, execution.id).status == "succeeded"


def test_nothing_is_written_when_a_fire_claimed_ahead_is_queued(store: Store, parts: Parts) -> None:
    """The dispatcher marks a fire claimed ahead queued at its fire time when it reads it;
    when it is due, the pass that queues it writes nothing: the burst's start path has the
    store to itself."""
    job_id = job(store, ["true"])
    parts.clock.now_ms = T0 + 750 - FIRE_AHEAD_MS
    parts.step()
    written: list[str] = []

    def grab(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "BEGIN", "SAVEPOINT")):
            written.append(statement)

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        parts.clock.now_ms = T0 + 750
        parts.dispatcher.step(parts.clock.now_ms)
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)
    (execution,) = list_executions(store, job_id=job_id)
    assert parts.queue.job_ids == [execution.id]
    assert written == []
    assert execution.queued_ms == T0 + 750


def test_a_fire_claimed_ahead_that_redis_refused_is_queued_by_the_next_pass(
    store: Store, parts: Parts
) -> None:
    job_id = job(store, ["true"])
    parts.clock.now_ms = T0 + 750 - FIRE_AHEAD_MS
    parts.step()  # claimed and marked ahead
    good_queue = parts.queue
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0")
    parts.dispatcher.queue = Queue(good_queue.name, connection=unreachable)
    parts.clock.now_ms = T0 + 750
    with pytest.raises(redis.ConnectionError):
        parts.dispatcher.step(parts.clock.now_ms)
    unreachable.close()
    parts.dispatcher.queue = good_queue
    parts.clock.now_ms = T0 + 760
    parts.dispatcher.step(parts.clock.now_ms)
    (execution,) = list_executions(store, job_id=job_id)
    assert good_queue.job_ids == [execution.id]  # not left for the lost-job check (5 s)


def test_a_mark_ahead_left_by_a_previous_run_of_the_member_is_forgotten(
    store: Store, parts: Parts, r: redis.Redis
) -> None:
    """A member stopped between marking a fire ahead and its time never queued it: its
    next run's dispatcher queues it when due, not the lost-job check seconds later."""
    job_id = job(store, ["true"])
    parts.clock.now_ms = T0 + 750 - FIRE_AHEAD_MS
    parts.step()
    (execution,) = list_executions(store, job_id=job_id)
    assert execution.queued_ms == T0 + 750
    next_run = Dispatcher(
        store, parts.queue, member_uuid=ME, stop=threading.Event(), clock_ms=parts.clock
    )
    parts.clock.now_ms = T0 + 800
    next_run.step(parts.clock.now_ms)
    assert parts.queue.job_ids == [execution.id]
    assert get_execution(store, execution.id).queued_ms == T0 + 800


def test_the_loop_wakes_the_fire_ahead_window_before_the_next_fire(
    store: Store, parts: Parts
) -> None:
    job(store, ["true"])
    waits: list[float] = []
    member = Member(
        MemberConfig(ME, 1.0),
        store=store,
        producer=parts.producer,
        stop=threading.Event(),
        clock_ms=parts.clock,
        sleep_s=waits.append,
    )
    member.step()  # at T0: the next fire is at T0 + 750, the next reload at T0 + 1000
    assert waits == [(750 - FIRE_AHEAD_MS) / 1000]


def test_a_job_still_running_is_claimed_at_its_time_not_ahead(store: Store, parts: Parts) -> None:
    job_id = job(store, ["true"])  # concurrency forbid, the default
    running = manual(store, job_id, fire_ms=T0)
    assert start_execution(store, running, now_ms=T0, member_uuid=ME)
    parts.clock.now_ms = T0 + 750 - FIRE_AHEAD_MS
    parts.step()  # claimed now, forbid would skip it: it waits for its time
    assert [e.id for e in list_executions(store, job_id=job_id)] == [running]
    finish_execution(store, running, status="succeeded", now_ms=T0 + 720)
    parts.clock.now_ms = T0 + 750
    parts.step()
    fired = [e for e in list_executions(store, job_id=job_id) if e.id != running]
    assert [(e.status, e.fire_ms, e.created_ms) for e in fired] == [
        ("scheduled", T0 + 750, T0 + 750)
    ]
    assert parts.queue.job_ids == [fired[0].id]


def test_a_fire_claimed_ahead_is_queued_by_a_pass_that_reads_nothing(
    store: Store, parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    job(store, ["true"])
    parts.clock.now_ms = T0 + 750 - FIRE_AHEAD_MS
    parts.step()
    queued_at_read: list[list[str]] = []
    real_read = dispatcher_module.list_unqueued

    def read(db: Store, member_uuid: str) -> list[ExecutionRow]:
        queued_at_read.append(list(parts.queue.job_ids))
        return real_read(db, member_uuid)

    monkeypatch.setattr(dispatcher_module, "list_unqueued", read)
    parts.clock.now_ms = T0 + 750
    parts.dispatcher.step(parts.clock.now_ms)
    (execution,) = list_executions(store, member_uuid=ME)
    assert parts.queue.job_ids == [execution.id]
    assert queued_at_read == []  # the burst's first wait for no read, none is made


def test_the_dispatcher_waits_for_a_fire_time_from_the_end_of_its_pass(
    store: Store, parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    job(store, ["true"])
    parts.clock.now_ms = T0 + 750 - FIRE_AHEAD_MS
    parts.member.step()  # claimed ahead; the dispatcher is woken
    real_read = dispatcher_module.list_unqueued

    def slow_read(db: Store, member_uuid: str) -> list[ExecutionRow]:
        parts.clock.now_ms += 30  # the pass's read takes 30 ms
        return real_read(db, member_uuid)

    monkeypatch.setattr(dispatcher_module, "list_unqueued", slow_read)
    waits: list[float | None] = []
    monkeypatch.setattr(parts.dispatcher._wake, "wait", waits.append)
    parts.dispatcher._wait_and_step()
    assert waits == [(FIRE_AHEAD_MS - 30) / 1000]  # woken at the fire time, not 30 ms late


def test_an_execution_aborted_between_its_start_and_its_hand_over_never_runs(
    store: Store, parts: Parts, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    job_id = job(store, ["touch", str(ran)], schedule=None)
    execution_id = manual(store, job_id)
    parts.dispatcher.step(T0)
    ended: list[bool] = []

    def abort_at_start(started: list[StartedExecution]) -> None:
        """As an abort command would, after the start in the store, before the hand-over."""
        for execution in started:
            assert abort_execution(store, execution.id, now_ms=T0, reason="aborted by test")
            ended.append(parts.pool.end(execution.id, None, "aborted by test"))

    consumer = Consumer(
        parts.queue.connection,
        parts.queue.key,
        store,
        parts.pool,
        member_uuid=ME,
        stop=threading.Event(),
        clock_ms=parts.clock,
        on_started=abort_at_start,
    )
    assert consumer.step() == 1
    assert parts.pool.wait_idle(10)
    parts.flush()
    assert ended == [True]  # the pool kept the end: the command never started
    assert not ran.exists()
    done = get_execution(store, execution_id)
    assert (done.status, done.reason) == ("aborted", "aborted by test")


def test_an_expected_execution_that_does_not_start_is_forgotten(parts: Parts) -> None:
    parts.pool.expect(["e-1"])
    assert parts.pool.end("e-1", None, "aborted")  # kept while it may still be handed over
    parts.pool.forget(["e-1"])
    assert not parts.pool.end("e-1", None, "aborted")
