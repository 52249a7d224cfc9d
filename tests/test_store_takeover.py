"""commit_takeover: one transaction of set-based statements, fenced epochs, exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from workers.store import (
    ALL_OWNERS,
    MovedJob,
    Store,
    commit_takeover,
    create_job,
    get_execution,
    get_job,
    insert_execution,
    list_jobs,
    list_takeovers,
    record_takeover_outcome,
)

DEAD = "dddddddd-0000-4000-8000-000000000000"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"
D = "eeeeeeee-0000-4000-8000-000000000004"
X = "ffffffff-0000-4000-8000-000000000005"
NOW_MS = 50_000


def _jobs(
    store: Store, n: int, owner: str = DEAD, project: str = "ops", start: int = 0
) -> list[str]:
    """``n`` jobs of ``owner``, created in id order (so id order is also insertion order)."""
    ids = []
    for i in range(start, start + n):
        job = create_job(
            store,
            project=project,
            group_name="",
            name=f"{owner[:4]}-job-{i:04d}",
            command=["true"],
            schedule="* * * * *",
            modified_by=owner,
            now_ms=1_000,
            job_id=f"{owner[:8]}-0000-4000-8000-{i:012d}",
        )
        ids.append(job.id)
    return ids


def _commit(store: Any, quotas: list[tuple[str, int]], **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "proposal_id": "p-1",
        "dead_uuid": DEAD,
        "policy": "any",
        "proposed_ms": 10_000,
        "due_ms": 40_000,
        "now_ms": NOW_MS,
        "quotas": quotas,
    }
    return commit_takeover(store, **{**args, **kwargs})


def _owners(store: Store, ids: list[str]) -> list[str]:
    return [get_job(store, job_id).owner_uuid for job_id in ids]


@contextmanager
def _statements(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def test_jobs_go_to_destinations_in_rank_order_with_epoch_plus_one(store: Store) -> None:
    ids = _jobs(store, 6)
    result = _commit(store, [(B, 2), (C, 3), (D, 1)])
    assert result.committed
    assert _owners(store, ids) == [B, B, C, C, C, D]
    assert result.destinations == {B: 2, C: 3, D: 1} and result.jobs_moved == 6
    assert sorted(result.moved, key=lambda m: m.job_id) == [
        MovedJob(job_id, DEAD, owner)
        for job_id, owner in zip(ids, _owners(store, ids), strict=True)
    ]
    for job_id in ids:
        job = get_job(store, job_id)
        assert (job.owner_epoch, job.modified_ms, job.modified_by) == (2, NOW_MS, DEAD)
    (row,) = list_takeovers(store)
    assert (row.proposal_id, row.dead_uuid, row.policy, row.outcome) == (
        "p-1",
        DEAD,
        "any",
        "committed",
    )
    assert (row.proposed_ms, row.due_ms, row.decided_ms) == (10_000, 40_000, NOW_MS)
    assert (row.jobs_moved, row.destinations) == (6, {B: 2, C: 3, D: 1})


@pytest.mark.parametrize(
    ("jobs", "quotas", "expected"),
    [
        (4, [(B, 1), (C, 1)], [B, C, C, C]),  # surplus to the last destination
        (3, [(B, 5), (C, 5)], [B, B, B]),  # fewer jobs than the quotas
        (3, [(B, 0), (C, 2), (D, 0)], [C, C, D]),  # a zero quota receives only a surplus
        (2, [(C, 0)], [C, C]),
    ],
)
def test_quotas_edge_cases(
    store: Store, jobs: int, quotas: list[tuple[str, int]], expected: list[str]
) -> None:
    ids = _jobs(store, jobs)
    result = _commit(store, quotas)
    assert _owners(store, ids) == expected
    counted = {o: expected.count(o) for o in expected}
    assert result.destinations == counted


def test_the_spread_is_deterministic(store: Store) -> None:
    """Same table content, same quotas -> same assignment (on a second set of jobs)."""
    first = _jobs(store, 9, project="one")
    _commit(store, [(B, 4), (C, 5)], project="one")
    second = _jobs(store, 9, project="two", start=100)
    _commit(store, [(B, 4), (C, 5)], project="two", proposal_id="p-2")
    assert _owners(store, first) == _owners(store, second) == [B] * 4 + [C] * 5


@pytest.mark.parametrize("with_jobs", [True, False])
def test_one_update_of_scheduled_jobs_whatever_the_number_of_jobs(
    store: Store, with_jobs: bool
) -> None:
    counts = []
    for n, proposal in ((3, "small"), (150, "large")):
        dead = DEAD if n == 3 else X
        ids = _jobs(store, n, owner=dead)
        with _statements(store) as seen:
            result = _commit(
                store,
                [(B, n // 2), (C, n - n // 2)],
                dead_uuid=dead,
                proposal_id=proposal,
                with_jobs=with_jobs,
            )
        assert result.destinations == {B: n // 2, C: n - n // 2}
        assert len(result.moved) == (n if with_jobs else 0)
        owners = _owners(store, ids)
        assert owners == sorted(owners) and Counter(owners) == result.destinations
        updates = [s for s in seen if "UPDATE SCHEDULED_JOBS" in s.upper()]
        assert len(updates) == 1, updates
        counts.append(len(seen))
    assert counts[0] == counts[1]  # no statement per job


def test_a_proposal_committed_by_two_racing_workers_commits_once(store: Store) -> None:
    ids = _jobs(store, 20)
    barrier = threading.Barrier(2)

    def commit(dest: str) -> bool:
        barrier.wait(timeout=10)
        return bool(_commit(store, [(dest, 20)]).committed)

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(commit, [B, C]))
    assert sorted(outcomes) == [False, True]
    winner = B if outcomes[0] else C
    assert _owners(store, ids) == [winner] * 20
    assert {get_job(store, j).owner_epoch for j in ids} == {2}
    assert [row.destinations for row in list_takeovers(store)] == [{winner: 20}]


def test_counts_without_jobs_match_the_listing(store: Store) -> None:
    listed_ids = _jobs(store, 7)
    listed = _commit(store, [(B, 3), (C, 2)])
    counted_ids = _jobs(store, 7, owner=X)
    counted = _commit(store, [(B, 3), (C, 2)], dead_uuid=X, proposal_id="p-2", with_jobs=False)
    assert counted.moved == [] and counted.destinations == listed.destinations == {B: 3, C: 4}
    assert _owners(store, counted_ids) == _owners(store, listed_ids)
    assert list_takeovers(store, dead_uuid=X)[0].destinations == {B: 3, C: 4}


def test_pending_one_off_executions_move_with_their_jobs(store: Store) -> None:
    j1, j2 = _jobs(store, 2)
    (other,) = _jobs(store, 1, owner=X, start=10)

    def execution(job_id: str, status: str, trigger: str = "manual") -> str:
        return insert_execution(
            store,
            job_id=job_id,
            member_uuid=DEAD,
            trigger=trigger,
            fire_ms=1,
            now_ms=1,
            status=status,
        )

    pending = [execution(j1, "scheduled"), execution(j2, "scheduled", "remote")]
    running, done = execution(j1, "running"), execution(j2, "succeeded")
    not_moved_job = execution(other, "scheduled")  # X's job stays with X
    result = _commit(store, [(B, 1), (C, 1)])
    assert result.executions_moved == 2
    assert [get_execution(store, e).member_uuid for e in pending] == [B, C]
    for kept in (running, done, not_moved_job):
        assert get_execution(store, kept).member_uuid == DEAD


def test_a_redelivered_proposal_commits_nothing_twice(store: Store) -> None:
    ids = _jobs(store, 4)
    assert _commit(store, [(B, 2), (C, 2)]).committed
    again = _commit(store, [(D, 4)], now_ms=NOW_MS + 1)
    assert (again.committed, again.moved, again.destinations, again.executions_moved) == (
        False,
        [],
        {},
        0,
    )
    assert _owners(store, ids) == [B, B, C, C]
    assert {get_job(store, j).owner_epoch for j in ids} == {2}
    (row,) = list_takeovers(store)
    assert (row.decided_ms, row.destinations) == (NOW_MS, {B: 2, C: 2})


def test_held_and_no_destination_are_not_final_cancelled_is(store: Store) -> None:
    ids = _jobs(store, 2)
    common: dict[str, Any] = {
        "dead_uuid": DEAD,
        "policy": "any",
        "proposed_ms": 1,
        "due_ms": 2,
        "now_ms": 3,
    }
    assert record_takeover_outcome(
        store, proposal_id="p-1", outcome="held", detail="guard", **common
    )
    assert record_takeover_outcome(store, proposal_id="p-1", outcome="no_destination", **common)
    assert _commit(store, [(B, 2)]).committed
    assert list_takeovers(store)[0].outcome == "committed"
    assert record_takeover_outcome(store, proposal_id="p-2", outcome="cancelled", **common)
    assert not record_takeover_outcome(store, proposal_id="p-2", outcome="held", **common)
    assert not _commit(store, [(C, 2)], proposal_id="p-2").committed
    assert _owners(store, ids) == [B, B]


def test_a_failure_mid_transaction_leaves_nothing_half_done(store: Store) -> None:
    ids = _jobs(store, 3)
    insert_execution(store, job_id=ids[0], member_uuid=DEAD, trigger="manual", fire_ms=1, now_ms=1)

    def explode(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE EXECUTIONS"):
            raise RuntimeError("database went away")

    event.listen(store.engine, "before_cursor_execute", explode)
    try:
        with pytest.raises(RuntimeError, match="went away"):
            _commit(store, [(B, 3)])
    finally:
        event.remove(store.engine, "before_cursor_execute", explode)
    assert [(j.owner_uuid, j.owner_epoch) for j in list_jobs(store)] == [(DEAD, 1)] * 3
    assert list_takeovers(store) == []
    assert _commit(store, [(B, 3)]).committed  # the retry commits, once
    assert _owners(store, ids) == [B, B, B]


def test_project_and_job_filters(store: Store) -> None:
    ops = _jobs(store, 3, project="ops")
    web = _jobs(store, 3, project="web", start=10)
    result = _commit(store, [(B, 3)], project="web", job_ids=[web[0], web[2], ops[0]])
    assert sorted(m.job_id for m in result.moved) == [web[0], web[2]]
    assert _owners(store, ops + web) == [DEAD] * 3 + [B, DEAD, B]
    assert get_job(store, web[1]).owner_epoch == 1


def test_all_owners_moves_every_job_but_the_destinations(store: Store) -> None:
    mine = _jobs(store, 2, owner=B)
    theirs = _jobs(store, 2, owner=DEAD) + _jobs(store, 1, owner=X, start=5)
    insert_execution(store, job_id=theirs[2], member_uuid=X, trigger="manual", fire_ms=1, now_ms=1)
    result = _commit(store, [(B, 0)], dead_uuid=None, outcome="manual", proposal_id="m-1")
    assert sorted((m.job_id, m.previous_owner, m.new_owner) for m in result.moved) == sorted(
        [(theirs[0], DEAD, B), (theirs[1], DEAD, B), (theirs[2], X, B)]
    )
    assert (result.destinations, result.executions_moved) == ({B: 3}, 1)
    assert [get_job(store, j).owner_epoch for j in mine] == [1, 1]  # not moved
    (row,) = list_takeovers(store)
    assert (row.dead_uuid, row.outcome, row.jobs_moved) == (ALL_OWNERS, "manual", 3)


def test_no_quotas_records_the_outcome_and_moves_nothing(store: Store) -> None:
    (job,) = _jobs(store, 1, owner=X)
    result = _commit(store, [])
    assert (result.committed, result.jobs_moved) == (True, 0)
    assert get_job(store, job).owner_uuid == X
    assert list_takeovers(store)[0].outcome == "committed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quotas": [(B, 1), (DEAD, 1)]}, "cannot receive its own jobs"),
        ({"quotas": [(B, -1)]}, "negative quota"),
        ({"quotas": [(B, 1)], "outcome": "cancelled"}, "committed or manual"),
    ],
)
def test_bad_arguments_raise_before_touching_the_store(
    store: Store, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _commit(store, **kwargs)
    assert list_takeovers(store) == []


def test_record_outcome_refuses_commit_outcomes(store: Store) -> None:
    for outcome in ("committed", "manual", "bogus"):
        with pytest.raises(ValueError, match="without a commit"):
            record_takeover_outcome(
                store,
                proposal_id="p",
                dead_uuid=DEAD,
                policy="any",
                proposed_ms=1,
                due_ms=1,
                now_ms=1,
                outcome=outcome,
            )
