"""Executions between commit and run: enqueue marks, the start fence, retries on failure,
aborts, and the recovery commit."""

from __future__ import annotations

from workers.store import (
    NewExecution,
    Store,
    abort_execution,
    commit_recovery,
    create_job,
    finish_execution,
    get_execution,
    insert_execution,
    list_executions,
    list_recoveries,
    list_unqueued,
    mark_queued,
    move_scheduled_executions,
    running_executions,
    start_execution,
)

DEAD = "dddddddd-0000-4000-8000-000000000004"
LIVE = "aaaaaaaa-0000-4000-8000-000000000001"


def _job(store: Store, name: str = "backup", retry_count: int = 2) -> str:
    return create_job(
        store,
        project="p",
        group_name="",
        name=name,
        command=["backup"],
        schedule=None,
        modified_by=DEAD,
        now_ms=1,
        retry_count=retry_count,
        retry_delay_s=1.5,
    ).id


def _execution(store: Store, job_id: str, member: str = DEAD, fire_ms: int = 10) -> str:
    return insert_execution(
        store, job_id=job_id, member_uuid=member, trigger="schedule", fire_ms=fire_ms, now_ms=10
    )


def test_unqueued_executions_are_listed_until_marked_queued(store: Store) -> None:
    job = _job(store)
    later, sooner = _execution(store, job, fire_ms=50), _execution(store, job, fire_ms=20)
    elsewhere = _execution(store, job, member=LIVE)
    assert [e.id for e in list_unqueued(store, DEAD)] == [sooner, later]
    assert mark_queued(store, [sooner, elsewhere], member_uuid=DEAD, now_ms=60) == 1
    assert [e.id for e in list_unqueued(store, DEAD)] == [later]
    assert get_execution(store, sooner).queued_ms == 60
    assert mark_queued(store, [sooner], member_uuid=DEAD, now_ms=61) == 0  # idempotent


def test_a_moved_execution_does_not_start_on_its_former_member(store: Store) -> None:
    job = _job(store)
    execution_id = _execution(store, job)
    mark_queued(store, [execution_id], member_uuid=DEAD, now_ms=11)
    assert move_scheduled_executions(store, from_member=DEAD, to_member=LIVE) == [execution_id]
    assert get_execution(store, execution_id).queued_ms is None  # to be enqueued by LIVE
    assert not start_execution(store, execution_id, now_ms=20, member_uuid=DEAD)
    assert start_execution(store, execution_id, now_ms=20, member_uuid=LIVE)


def test_a_retry_is_inserted_only_by_the_finish_that_happened(store: Store) -> None:
    job = _job(store)
    first = _execution(store, job)
    start_execution(store, first, now_ms=20)
    retry = NewExecution("r-1", job, DEAD, fire_ms=1_520, attempt=2, retry_of=first)
    assert finish_execution(store, first, status="failed", now_ms=20, exit_code=3, retry=retry)
    again = NewExecution("r-2", job, DEAD, fire_ms=1_520, attempt=2, retry_of=first)
    assert not finish_execution(store, first, status="failed", now_ms=21, retry=again)
    chain = list_executions(store, retry_of=first)
    assert [(e.id, e.attempt, e.trigger, e.status, e.fire_ms) for e in chain] == [
        ("r-1", 2, "retry", "scheduled", 1_520)
    ]


def test_abort_reports_what_it_stopped(store: Store) -> None:
    job = _job(store)
    waiting, running = _execution(store, job), _execution(store, job)
    start_execution(store, running, now_ms=20)
    before = abort_execution(store, running, now_ms=30)
    assert before is not None and before.status == "running"
    before = abort_execution(store, waiting, now_ms=30)
    assert before is not None and before.status == "scheduled"
    assert abort_execution(store, waiting, now_ms=31) is None
    assert get_execution(store, running).status == "aborted"
    assert not start_execution(store, waiting, now_ms=32)


def test_commit_recovery_marks_retries_and_rehomes_once(store: Store) -> None:
    with_retry, without = _job(store, "a"), _job(store, "b", retry_count=0)
    running = [_execution(store, with_retry), _execution(store, without)]
    for execution_id in running:
        start_execution(store, execution_id, now_ms=20)
    pending = _execution(store, with_retry, fire_ms=99)
    seen = {r.id: r for r in running_executions(store, DEAD)}
    assert seen[running[0]].retry_count == 2 and seen[running[1]].retry_count == 0
    retries = {running[0]: NewExecution("retry-1", with_retry, LIVE, 5_000, 2, running[0])}
    kwargs = {
        "proposal_id": "p-1",
        "dead_uuid": DEAD,
        "policy": "any",
        "proposed_ms": 100,
        "due_ms": 200,
        "now_ms": 300,
        "mark": running,
        "retries": retries,
        "reschedule_to": LIVE,
    }
    result = commit_recovery(store, **kwargs)  # type: ignore[arg-type]
    assert result.committed and sorted(result.marked) == sorted(running)
    assert result.rescheduled == [pending]
    assert result.retries == [
        {
            "execution": running[0],
            "job": with_retry,
            "from": DEAD,
            "to": LIVE,
            "retry_execution": "retry-1",
            "attempt": 2,
            "not_before_ms": 5_000,
        }
    ]
    assert not commit_recovery(store, **kwargs).committed  # type: ignore[arg-type]
    kwargs["proposal_id"] = "p-2"  # a later proposal finds nothing running any more
    assert commit_recovery(store, **kwargs).marked == []  # type: ignore[arg-type]
    assert [e.status for e in (get_execution(store, i) for i in running)] == ["incomplete"] * 2
    assert len(list_executions(store, retry_of=running[0])) == 1
    (audit,) = [r for r in list_recoveries(store) if r.proposal_id == "p-1"]
    assert (audit.outcome, audit.executions_marked, len(audit.retries)) == ("committed", 2, 1)
