"""A member's pool path in the store: fires claimed in one transaction, a batch started by one
fenced statement, which executions still run here, and what runs and waits per member."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from workers.store import (
    Backlog,
    Finish,
    FireClaim,
    NewExecution,
    Store,
    abort_execution,
    claim_fires,
    count_backlog,
    create_job,
    fence,
    finish_executions,
    get_execution,
    get_job,
    insert_execution,
    insert_executions,
    list_executions,
    mark_incomplete,
    mark_queued,
    move_scheduled_executions,
    reassign_jobs,
    running_here,
    start_executions,
    unmark_queued,
)

ME = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"


def _job(store: Store, name: str, owner: str = ME, *, retry_count: int = 0) -> str:
    return create_job(
        store,
        project="p",
        group_name="",
        name=name,
        command=["echo", name],
        schedule="* * * * * *",
        modified_by=owner,
        now_ms=1,
        retry_count=retry_count,
        retry_delay_s=2.5,
    ).id


def test_claim_fires_claims_in_one_transaction_and_refuses_what_the_fence_refuses(
    store: Store,
) -> None:
    mine, lost = _job(store, "mine"), _job(store, "lost")
    reassign_jobs(store, from_owner=ME, to_owner=OTHER, job_ids=[lost])
    fires = [
        FireClaim(mine, 1, 1000, 2000),
        FireClaim(lost, 1, 1000, 2000),
        FireClaim(mine, 1, 2000, 3000),
        FireClaim(mine, 1, 2000, 3000),  # the same time again: refused
    ]
    claimed = claim_fires(store, fires, member_uuid=ME, now_ms=2005)
    assert set(claimed) == {fires[0], fires[2]}
    first, second = claimed[fires[0]].execution_id, claimed[fires[2]].execution_id
    rows = sorted(list_executions(store, job_id=mine), key=lambda e: e.fire_ms)
    assert [(e.id, e.fire_ms, e.owner_epoch, e.trigger, e.status) for e in rows] == [
        (first, 1000, 1, "schedule", "scheduled"),
        (second, 2000, 1, "schedule", "skipped"),  # forbid: the first has not run yet
    ]
    job = get_job(store, mine)
    assert (job.last_fire_ms, job.next_fire_ms) == (2000, 3000)
    assert list_executions(store, job_id=lost) == []


def test_start_executions_starts_only_what_is_still_scheduled_here_in_the_given_order(
    store: Store,
) -> None:
    job = _job(store, "j", retry_count=2)
    ids = [
        insert_execution(store, job_id=job, member_uuid=ME, trigger="manual", fire_ms=t, now_ms=1)
        for t in (10, 20, 30, 40)
    ]
    abort_execution(store, ids[1], now_ms=5)
    move_scheduled_executions(store, from_member=ME, to_member=OTHER, job_ids=None)
    fresh = insert_execution(
        store, job_id=job, member_uuid=ME, trigger="retry", fire_ms=50, now_ms=2
    )
    started = start_executions(store, [fresh, *ids], member_uuid=ME, now_ms=99)
    assert [s.id for s in started] == [fresh]  # the others: aborted, or moved away
    (s,) = started
    assert (s.command, s.retry_count, s.retry_delay_s, s.started_ms, s.trigger) == (
        ("echo", "j"),
        2,
        2.5,
        99,
        "retry",
    )
    row = get_execution(store, fresh)
    assert (row.status, row.started_ms, row.rq_job_id) == ("running", 99, fresh)
    assert start_executions(store, [fresh], member_uuid=ME, now_ms=100) == []  # once


def test_running_here_and_the_backlog_per_member(store: Store) -> None:
    job = _job(store, "j")

    def add(member: str, fire_ms: int) -> str:
        return insert_execution(
            store, job_id=job, member_uuid=member, trigger="manual", fire_ms=fire_ms, now_ms=1
        )

    a, b, c = add(ME, 10), add(ME, 10), add(OTHER, 10)
    add(ME, 10)  # due, waiting
    add(ME, 5_000)  # not due yet: not waiting
    start_executions(store, [a, b], member_uuid=ME, now_ms=20)
    start_executions(store, [c], member_uuid=OTHER, now_ms=20)
    assert running_here(store, ME, [a, b, c]) == {a, b}
    mark_incomplete(store, member_uuid=ME, now_ms=30, execution_ids=[b])
    assert running_here(store, ME, [a, b, c]) == {a}
    assert running_here(store, ME, []) == set()
    assert count_backlog(store, now_ms=100) == {
        ME: Backlog(running=1, waiting=1),
        OTHER: Backlog(running=1, waiting=0),
    }


def test_claim_fires_splits_a_big_batch_and_keeps_each_job_s_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fence, "CLAIM_CHUNK", 2)
    jobs = [_job(store, f"j{i}") for i in range(5)]
    fires = [FireClaim(j, 1, t, t + 1000) for t in (3000, 1000, 2000) for j in jobs]
    claimed = claim_fires(store, fires, member_uuid=ME, now_ms=3005)
    assert len(claimed) == 15
    for j in jobs:
        assert sorted(e.fire_ms for e in list_executions(store, job_id=j)) == [1000, 2000, 3000]
        assert (get_job(store, j).last_fire_ms, get_job(store, j).next_fire_ms) == (3000, 4000)


def test_finish_executions_records_many_and_never_over_an_ended_one(store: Store) -> None:
    job = _job(store, "j")
    ids = [
        insert_execution(store, job_id=job, member_uuid=ME, trigger="manual", fire_ms=1, now_ms=1)
        for _ in range(3)
    ]
    start_executions(store, ids, member_uuid=ME, now_ms=2)
    mark_incomplete(store, member_uuid=ME, now_ms=3, execution_ids=[ids[2]])
    finishes = [
        Finish(ids[0], "succeeded", 0, "ok\n", None, 7),  # ended at 7, written at 9
        Finish(ids[1], "timedout", 2, "", "timed out after 1 s"),
        Finish(ids[2], "failed", -15, ""),  # recovered meanwhile: left as it is
    ]
    assert finish_executions(store, finishes, now_ms=9) in (2, -1)
    rows = [get_execution(store, i) for i in ids]
    assert [(e.status, e.exit_code, e.output, e.reason, e.ended_ms) for e in rows] == [
        ("succeeded", 0, "ok\n", None, 7),
        ("timedout", 2, "", "timed out after 1 s", 9),
        ("incomplete", None, None, None, 3),
    ]


@contextmanager
def _statements(store: Store) -> Iterator[list[tuple[str, object]]]:
    """The SQL statements (and their parameters) run on ``store`` meanwhile."""
    seen: list[tuple[str, object]] = []

    def grab(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)


def test_the_pool_path_looks_executions_up_by_id_never_by_the_members_backlog(
    store: Store,
) -> None:
    """Starting a batch, marking it queued and asking which still run name the executions by
    id: each must look those few ids up, not scan every execution of the member waiting
    in that status (a backlog of thousands made each batch of five cost a scan of them all:
    SQLite, which keeps no statistics, chose the member's index, and so did PostgreSQL)."""
    job = _job(store, "backlog")
    new = [
        NewExecution(str(uuid.uuid4()), job, ME, fire_ms=1, trigger="manual") for _ in range(300)
    ]
    ids = insert_executions(store, new, now_ms=1)
    with _statements(store) as seen:
        assert mark_queued(store, ids[:5], member_uuid=ME, now_ms=2) == 5
        assert unmark_queued(store, ids[:5], member_uuid=ME) == 5
        assert len(start_executions(store, ids[:5], member_uuid=ME, now_ms=3)) == 5
        assert running_here(store, ME, ids[:10]) == set(ids[:5])
    by_id = [(sql, params) for sql, params in seen if "IN (" in sql and "executions" in sql]
    assert len(by_id) >= 4
    explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        for sql, params in by_id:
            plan = " ".join(str(row) for row in conn.exec_driver_sql(explain + sql, params))  # type: ignore[arg-type]
            assert "ix_executions_member_uuid_status" not in plan, (sql, plan)


def test_on_postgresql_a_batch_starts_in_one_statement_with_no_transaction_around_it(
    store: Store,
) -> None:
    """The start of a batch is one statement on PostgreSQL: run in autocommit, it saves the
    BEGIN and COMMIT round trips of every consumer pass. SQLite starts it in a write
    transaction (an UPDATE, then a SELECT)."""
    job = _job(store, "autocommit")
    new = [NewExecution(str(uuid.uuid4()), job, ME, fire_ms=1, trigger="manual") for _ in range(3)]
    ids = insert_executions(store, new, now_ms=1)
    modes: list[object] = []

    def grab(conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE"):
            modes.append(conn.get_execution_options().get("isolation_level"))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        assert [e.id for e in start_executions(store, ids, member_uuid=ME, now_ms=2)] == ids
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)
    assert modes == ["AUTOCOMMIT" if store.dialect == "postgresql" else None]
    assert {get_execution(store, i).status for i in ids} == {"running"}  # type: ignore[union-attr]
