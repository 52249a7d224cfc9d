"""The member loop in-process, with a moved clock, on real Redis and a real database: fires go
through the fence, executions are enqueued on the member's RQ queue and recorded by the task;
a lost job is unscheduled and logged once. Also the task's command runner."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

import pytest
import redis
from rq import Queue
from rq.job import Job

from producers.heartbeat import HeartbeatProducer
from schemas.codec import decode_as
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from tests.cluster import wait_for
from workers.node.member import (
    REQUEUE_AFTER_MS,
    REQUEUE_CHECK_MS,
    RQ_RESTART_CHECK_MS,
    Member,
    MemberConfig,
)
from workers.node.rq_worker import RqWorkerProcess, queue_name
from workers.node.runner import OUTPUT_TAIL_BYTES, run_command, use_database
from workers.store import (
    Store,
    create_job,
    get_execution,
    get_job,
    insert_execution,
    list_executions,
    mark_incomplete,
    move_scheduled_executions,
    reassign_jobs,
    start_execution,
)

ME = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"
T0 = 1_767_225_600_250  # 2026-01-01 00:00:00.250 UTC


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def member_parts(
    store: Store, r: redis.Redis, db_url: str
) -> Iterator[tuple[Member, Clock, Queue, HeartbeatProducer]]:
    clock = Clock(T0)
    stop = threading.Event()
    producer = HeartbeatProducer(r, uuid=ME, name="me", interval_s=1.0)
    queue = Queue(queue_name(ME), connection=r)
    config = MemberConfig(ME, 1.0, db_url, queue.name)  # reload every 1000 ms
    member = Member(
        config,
        store=store,
        queue=queue,
        producer=producer,
        stop=stop,
        clock_ms=clock,
        sleep_s=lambda _s: None,  # the test moves the clock itself
    )
    yield member, clock, queue, producer


def _job(store: Store, command: list[str], schedule: str = "* * * * * *") -> str:
    return create_job(
        store,
        project="ops",
        group_name="",
        name="tick",
        command=command,
        schedule=schedule,
        modified_by=ME,
        now_ms=T0 - 10_000,
    ).id


def test_a_due_time_is_fired_enqueued_and_recorded(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    member, clock, queue, _ = member_parts
    job_id = _job(store, [sys.executable, "-c", "print('hi'); raise SystemExit(3)"])
    member.step()
    assert list_executions(store, job_id=job_id) == []
    clock.now_ms = T0 + 750  # 00:00:01.000
    member.step()
    (execution,) = list_executions(store, job_id=job_id)
    assert (execution.status, execution.fire_ms, execution.owner_epoch) == (
        "scheduled",
        T0 + 750,
        1,
    )
    assert get_job(store, job_id).next_fire_ms == T0 + 1750
    assert queue.job_ids == [execution.id]
    rq_job = queue.fetch_job(execution.id)
    assert rq_job is not None
    assert rq_job.args == (execution.id,)  # no store URL, not even the command
    use_database(store.engine.url.render_as_string(hide_password=False))
    assert rq_job.perform() == "failed"
    done = get_execution(store, execution.id)
    assert (done.status, done.exit_code, done.output) == ("failed", 3, "hi\n")
    assert done.rq_job_id == execution.id


def test_the_fence_refuses_a_lost_job_logged_once(
    store: Store,
    member_parts: tuple[Member, Clock, Queue, HeartbeatProducer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    member, clock, queue, _ = member_parts
    job_id = _job(store, ["true"])
    member.step()
    reassign_jobs(store, from_owner=ME, to_owner=OTHER)
    caplog.set_level(logging.INFO, logger="workers.node.member")
    clock.now_ms = T0 + 750  # due, before the next reload: the fence decides
    member.step()
    clock.now_ms = T0 + 1750  # reload: the job is not listed any more
    member.step()
    clock.now_ms = T0 + 2750
    member.step()
    assert list_executions(store, job_id=job_id) == []
    assert queue.count == 0
    lost = [r.getMessage() for r in caplog.records if "lost job" in r.getMessage()]
    assert lost == [f"member {ME}: lost job {job_id} (epoch 1)"]
    assert member.schedule.plans == {}


def test_a_job_taken_back_is_scheduled_again_after_the_last_claimed_time(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    member, clock, _, _ = member_parts
    job_id = _job(store, ["true"])
    member.step()
    reassign_jobs(store, from_owner=ME, to_owner=OTHER)
    clock.now_ms = T0 + 1000  # reload: lost (before its due 00:00:01 was fired)
    member.step()
    assert member.schedule.plans == {}
    reassign_jobs(store, from_owner=OTHER, to_owner=ME)
    clock.now_ms = T0 + 2000  # reload: owned again at epoch 3, seen at 00:00:02.250
    member.step()
    assert member.schedule.plans[job_id].owner_epoch == 3
    assert list_executions(store, job_id=job_id) == []
    clock.now_ms = T0 + 2750
    member.step()
    (execution,) = list_executions(store, job_id=job_id)
    assert (execution.fire_ms, execution.owner_epoch) == (T0 + 2750, 3)


def test_an_execution_not_enqueued_is_enqueued_on_the_next_step(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    member, clock, queue, _ = member_parts
    job_id = _job(store, ["true"])
    member.step()
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0")
    member.queue = Queue(queue.name, connection=unreachable)
    clock.now_ms = T0 + 750
    with pytest.raises(redis.ConnectionError):
        member.step()  # committed through the fence, but Redis refused the enqueue
    unreachable.close()
    (execution,) = list_executions(store, job_id=job_id)
    member.queue = queue
    clock.now_ms = T0 + 800
    member.step()
    assert queue.job_ids == [execution.id]
    assert len(list_executions(store, job_id=job_id)) == 1


def test_a_queued_execution_whose_rq_job_was_lost_is_queued_again(
    store: Store,
    member_parts: tuple[Member, Clock, Queue, HeartbeatProducer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis failover may drop the enqueue the store already records as queued: the member
    finds the execution still scheduled with no RQ job and queues it again; one still
    waiting in the queue is left alone."""
    member, clock, queue, _ = member_parts
    job_id = _job(store, ["true"], schedule="0 0 1 1 *")
    lost, waiting = (
        insert_execution(
            store, job_id=job_id, member_uuid=ME, trigger="retry", fire_ms=T0, now_ms=T0
        )
        for _ in range(2)
    )
    member.step()
    assert sorted(queue.job_ids) == sorted([lost, waiting])
    Job.fetch(lost, connection=queue.connection).delete()  # the write the failover dropped
    clock.now_ms = T0 + REQUEUE_AFTER_MS  # not yet: queued exactly REQUEUE_AFTER_MS ago
    member.step()
    assert queue.job_ids == [waiting]
    clock.now_ms = T0 + REQUEUE_AFTER_MS + REQUEUE_CHECK_MS
    with caplog.at_level(logging.WARNING, logger="workers.node.member"):
        member.step()
    assert queue.job_ids == [waiting, lost]
    assert get_execution(store, lost).queued_ms == clock.now_ms
    assert get_execution(store, waiting).queued_ms == T0
    assert f"queueing them again: {lost}" in caplog.text


def test_executions_assigned_by_others_are_queued_when_due_and_once(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    member, clock, queue, _ = member_parts
    job_id = _job(store, ["true"], schedule="0 0 1 1 *")
    later = insert_execution(
        store, job_id=job_id, member_uuid=ME, trigger="retry", fire_ms=T0 + 500, now_ms=T0
    )
    elsewhere = insert_execution(
        store, job_id=job_id, member_uuid=OTHER, trigger="retry", fire_ms=T0, now_ms=T0
    )
    member.step()
    assert queue.job_ids == []
    assert member._next_dispatch_ms == T0 + 500  # wakes at its fire time, not a poll later
    clock.now_ms = T0 + 500
    member.step()
    assert queue.job_ids == [later]
    assert get_execution(store, later).queued_ms == T0 + 500
    clock.now_ms = T0 + 1600
    member.step()
    assert queue.job_ids == [later]  # not twice
    assert get_execution(store, elsewhere).queued_ms is None


def test_a_failed_execution_is_retried_until_its_count(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    member, _clock, queue, _ = member_parts
    job_id = create_job(
        store,
        project="ops",
        group_name="",
        name="flaky",
        command=[sys.executable, "-c", "raise SystemExit(1)"],
        schedule=None,
        modified_by=ME,
        now_ms=T0,
        retry_count=1,
        retry_delay_s=2.5,
    ).id
    first = insert_execution(
        store, job_id=job_id, member_uuid=ME, trigger="manual", fire_ms=T0, now_ms=T0
    )
    member.step()
    use_database(store.engine.url.render_as_string(hide_password=False), ME)
    rq_job = queue.fetch_job(first)
    assert rq_job is not None and rq_job.perform() == "failed"
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
    member.dispatch(retry.fire_ms)
    rq_retry = queue.fetch_job(retry.id)
    assert rq_retry is not None and rq_retry.perform() == "failed"
    assert [e.id for e in list_executions(store, retry_of=first)] == [retry.id]  # count spent


def test_an_execution_moved_to_another_member_is_not_run_here(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    member, _clock, queue, _ = member_parts
    job_id = _job(store, ["true"], schedule="0 0 1 1 *")
    execution_id = insert_execution(
        store, job_id=job_id, member_uuid=ME, trigger="manual", fire_ms=T0, now_ms=T0
    )
    member.step()
    move_scheduled_executions(store, from_member=ME, to_member=OTHER)
    use_database(store.engine.url.render_as_string(hide_password=False), ME)
    rq_job = queue.fetch_job(execution_id)
    assert rq_job is not None and rq_job.perform() == "skipped"
    assert get_execution(store, execution_id).status == "scheduled"


def test_a_stopped_member_fires_nothing(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    member, clock, _, _ = member_parts
    job_id = _job(store, ["true"])
    member.step()
    member.stop.set()
    clock.now_ms = T0 + 750
    member.step()
    assert list_executions(store, job_id=job_id) == []


def test_running_executions_are_sent_with_the_heartbeats(
    store: Store,
    r: redis.Redis,
    member_parts: tuple[Member, Clock, Queue, HeartbeatProducer],
) -> None:
    member, _, _, producer = member_parts
    job_id = _job(store, ["true"], schedule="0 0 1 1 *")
    running = insert_execution(
        store, job_id=job_id, member_uuid=ME, trigger="manual", fire_ms=T0, now_ms=T0
    )
    insert_execution(store, job_id=job_id, member_uuid=ME, trigger="manual", fire_ms=T0, now_ms=T0)
    assert start_execution(store, running, now_ms=T0)
    member.step()
    producer.beat()
    ((_, fields),) = r.xrange(Keys().heartbeats)
    assert decode_as(fields[MESSAGE_FIELD], Heartbeat).running == (running,)


def test_run_command_keeps_the_tail_of_stdout_and_stderr() -> None:
    code = "import sys; sys.stdout.write('a' * 10000); sys.stdout.flush(); sys.stderr.write('END')"
    outcome = run_command([sys.executable, "-c", code])
    assert outcome.exit_code == 0 and outcome.status == "succeeded"
    assert len(outcome.output_tail) == OUTPUT_TAIL_BYTES
    assert outcome.output_tail.endswith("aaaEND")


def test_run_command_reports_a_missing_program_as_failed() -> None:
    outcome = run_command(["/nonexistent/qwc-test-program"])
    assert outcome.exit_code is None and outcome.status == "failed"
    assert "/nonexistent/qwc-test-program" in outcome.output_tail
    assert run_command([]).status == "failed"


def test_a_redis_error_in_remote_commands_does_not_hold_up_firing(
    store: Store,
    member_parts: tuple[Member, Clock, Queue, HeartbeatProducer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    member, clock, queue, _ = member_parts
    calls: list[int] = []

    def commands() -> None:
        calls.append(clock.now_ms)
        raise redis.ConnectionError("Error 111 connecting to the old primary")

    member.commands = commands
    job_id = _job(store, ["true"])
    member.step()
    clock.now_ms = T0 + 750
    with caplog.at_level(logging.WARNING, logger="workers.node.member"):
        member.step()
    (execution,) = list_executions(store, job_id=job_id)
    assert queue.job_ids == [execution.id]
    assert calls == [T0]  # retried at the next commands interval, not on every step
    assert "remote commands not processed (ConnectionError" in caplog.text


def test_run_command_is_killed_once_keep_running_says_no() -> None:
    answers = iter([True, False])
    outcome = run_command(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
        keep_running=lambda: next(answers),
        check_every_s=0.05,
    )
    assert outcome.stopped and outcome.exit_code == -9
    assert outcome.output_tail == "started\n"


def test_run_command_goes_on_when_keep_running_fails() -> None:
    def broken() -> bool:
        raise OSError("the store does not answer")

    outcome = run_command(
        [sys.executable, "-c", "import time; time.sleep(0.3)"],
        keep_running=broken,
        check_every_s=0.05,
    )
    assert (outcome.stopped, outcome.exit_code) == (False, 0)


def test_an_execution_recovered_elsewhere_while_running_here_is_killed(
    store: Store, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    """The store is the authority: a running execution marked incomplete by a recovery
    (this member was cut off or paused) has its command killed at the next check, and the
    task writes no outcome over the recovery's."""
    member, _clock, queue, _ = member_parts
    job_id = _job(store, [sys.executable, "-c", "import time; time.sleep(60)"], "0 0 1 1 *")
    execution_id = insert_execution(
        store, job_id=job_id, member_uuid=ME, trigger="manual", fire_ms=T0, now_ms=T0
    )
    member.step()
    use_database(store.engine.url.render_as_string(hide_password=False), ME, check_every_s=0.05)
    rq_job = queue.fetch_job(execution_id)
    assert rq_job is not None
    result: list[str] = []
    task = threading.Thread(target=lambda: result.append(rq_job.perform()), daemon=True)
    task.start()
    wait_for(lambda: get_execution(store, execution_id).status == "running", what="running")
    assert mark_incomplete(store, member_uuid=ME, now_ms=T0 + 1) == [execution_id]
    task.join(10)
    assert not task.is_alive(), "the command was not killed"
    assert result == ["stopped"]
    done = get_execution(store, execution_id)
    assert (done.status, done.exit_code) == ("incomplete", None)


def test_a_dead_rq_worker_is_restarted_within_a_second_not_a_heartbeat_interval(
    redis_url: str, member_parts: tuple[Member, Clock, Queue, HeartbeatProducer]
) -> None:
    """RQ's worker exits when Redis goes away (a failover): the member restarts it within
    RQ_RESTART_CHECK_MS, however long its heartbeat interval (the reload period) is."""
    member, clock, queue, _ = member_parts
    worker = RqWorkerProcess(redis_url, queue.name)
    worker.start()
    try:
        member.rq_worker = worker
        member.step()
        member._next_reload_ms = T0 + 3_600_000  # as with a one-hour heartbeat interval
        first_pid = worker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: not worker.is_alive(), what="the rq worker dead")
        clock.now_ms = T0 + RQ_RESTART_CHECK_MS - 1
        member.step()
        assert worker.pid == first_pid  # not checked again yet
        clock.now_ms = T0 + RQ_RESTART_CHECK_MS
        member.step()
        assert worker.pid != first_pid and worker.is_alive()
    finally:
        worker.stop(warm_s=0.5)
