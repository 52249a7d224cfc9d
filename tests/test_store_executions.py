"""Executions (conditional status changes, set-based moves) and the proposal audit."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from workers.store import (
    Store,
    create_job,
    finish_execution,
    get_execution,
    insert_execution,
    list_executions,
    list_recoveries,
    list_takeovers,
    mark_incomplete,
    move_scheduled_executions,
    reassign_jobs,
    record_recovery,
    record_takeover,
    start_execution,
)

DEAD = "dddddddd-0000-4000-8000-000000000004"
LIVE = "aaaaaaaa-0000-4000-8000-000000000001"


def _job(store: Store, name: str = "backup") -> str:
    return create_job(
        store,
        project="p",
        group_name="",
        name=name,
        command=["backup"],
        schedule=None,
        modified_by=DEAD,
        now_ms=1,
        retry_count=1,
    ).id


def _execution(store: Store, job_id: str, member: str = DEAD, **kwargs: object) -> str:
    return insert_execution(
        store,
        job_id=job_id,
        member_uuid=member,
        trigger="manual",
        fire_ms=10,
        now_ms=10,
        **kwargs,  # type: ignore[arg-type]
    )


def test_execution_lifecycle_is_conditional(store: Store) -> None:
    execution_id = _execution(store, _job(store))
    assert start_execution(store, execution_id, now_ms=20, rq_job_id="rq-1")
    assert not start_execution(store, execution_id, now_ms=21)
    assert finish_execution(store, execution_id, status="succeeded", now_ms=30, exit_code=0)
    assert not finish_execution(store, execution_id, status="failed", now_ms=31, exit_code=1)
    row = get_execution(store, execution_id)
    assert (row.status, row.started_ms, row.ended_ms, row.exit_code) == ("succeeded", 20, 30, 0)
    assert row.rq_job_id == "rq-1"
    with pytest.raises(ValueError, match="not a final"):
        finish_execution(store, execution_id, status="running", now_ms=32)


def test_bad_status_trigger_or_job_is_refused(store: Store) -> None:
    job_id = _job(store)
    with pytest.raises(ValueError, match="status"):
        _execution(store, job_id, status="done")
    with pytest.raises(ValueError, match="trigger"):
        insert_execution(
            store, job_id=job_id, member_uuid=DEAD, trigger="cron", fire_ms=1, now_ms=1
        )
    with pytest.raises(IntegrityError):  # foreign key (SQLite: PRAGMA foreign_keys=ON)
        _execution(store, "no-such-job")
    assert list_executions(store) == []


def test_mark_incomplete_changes_only_running_executions_once(store: Store) -> None:
    job_id = _job(store)
    running = _execution(store, job_id)
    start_execution(store, running, now_ms=11)
    scheduled = _execution(store, job_id)
    elsewhere = _execution(store, job_id, member=LIVE)
    start_execution(store, elsewhere, now_ms=11)
    assert mark_incomplete(store, member_uuid=DEAD, now_ms=50) == [running]
    assert mark_incomplete(store, member_uuid=DEAD, now_ms=60) == []
    assert get_execution(store, running).status == "incomplete"
    assert get_execution(store, running).ended_ms == 50
    assert get_execution(store, scheduled).status == "scheduled"
    assert get_execution(store, elsewhere).status == "running"
    retry = _execution(store, job_id, member=LIVE, attempt=2, retry_of=running)
    assert [e.id for e in list_executions(store, retry_of=running)] == [retry]
    assert {e.id for e in list_executions(store, statuses=["running", "incomplete"])} == {
        running,
        elsewhere,
    }


def test_takeover_moves_jobs_and_pending_executions_in_one_transaction(store: Store) -> None:
    job_id, other = _job(store), _job(store, "other")
    pending = _execution(store, job_id)
    with store.begin() as conn:
        assert record_takeover(
            conn, proposal_id="p-1", dead_uuid=DEAD, policy="any", proposed_ms=1, due_ms=2,
            decided_ms=3, outcome="committed", jobs_moved=1, destinations={LIVE: 1},
        )  # fmt: skip
        assert reassign_jobs(conn, from_owner=DEAD, to_owner=LIVE, job_ids=[job_id]) == [job_id]
        moved = move_scheduled_executions(conn, from_member=DEAD, to_member=LIVE, job_ids=[job_id])
        assert moved == [pending]
    assert get_execution(store, pending).member_uuid == LIVE
    assert [e.id for e in list_executions(store, member_uuid=DEAD)] == []
    assert other  # left with the dead member


def test_a_final_outcome_is_recorded_once(store: Store) -> None:
    common = {"dead_uuid": DEAD, "policy": "any", "proposed_ms": 1, "due_ms": 61}
    assert record_takeover(store, proposal_id="p-1", **common)  # type: ignore[arg-type]
    assert record_takeover(
        store,
        proposal_id="p-1",
        outcome="no_destination",
        decided_ms=62,
        **common,  # type: ignore[arg-type]
    )
    assert record_takeover(
        store, proposal_id="p-1", outcome="committed", decided_ms=400, jobs_moved=2,
        destinations={LIVE: 2}, **common,  # type: ignore[arg-type]
    )  # fmt: skip
    assert not record_takeover(
        store,
        proposal_id="p-1",
        outcome="committed",
        decided_ms=500,
        **common,  # type: ignore[arg-type]
    )
    (row,) = list_takeovers(store)
    assert (row.outcome, row.decided_ms, row.jobs_moved, row.destinations) == (
        "committed",
        400,
        2,
        {LIVE: 2},
    )


def test_takeover_outcome_is_checked(store: Store) -> None:
    with pytest.raises(IntegrityError):
        record_takeover(
            store, proposal_id="p", dead_uuid=DEAD, policy="any", proposed_ms=1, due_ms=2,
            outcome="maybe",
        )  # fmt: skip
    assert list_takeovers(store) == []


def test_recovery_audit(store: Store) -> None:
    retries = [{"execution": "e1", "retry": "e2", "member": LIVE}]
    assert record_recovery(
        store, proposal_id="r-1", dead_uuid=DEAD, policy="any", proposed_ms=1, due_ms=31,
        decided_ms=31, outcome="committed", executions_marked=1, retries=retries,
    )  # fmt: skip
    assert not record_recovery(
        store, proposal_id="r-1", dead_uuid=DEAD, policy="any", proposed_ms=1, due_ms=31,
        outcome="committed",
    )  # fmt: skip
    (row,) = list_recoveries(store, dead_uuid=DEAD)
    assert (row.executions_marked, row.retries, row.outcome) == (1, tuple(retries), "committed")
    assert list_recoveries(store, dead_uuid=LIVE) == []
