"""A job's concurrency policy: the pure decision on a table, and the fence applying it in the
fire's transaction (SQLite and PostgreSQL), cluster-wide, also against a racing remote run."""

from __future__ import annotations

import threading

import pytest

from schemas.errors import NotFoundError
from tests.fixtures_sql import run_threads
from workers.store import (
    ActiveExecution,
    Admission,
    Store,
    admit_execution,
    create_job,
    create_store_engine,
    decide_admission,
    finish_execution,
    fire_job,
    get_execution,
    get_job,
    insert_execution,
    list_executions,
    mark_incomplete,
    reassign_jobs,
    record_fire,
    start_execution,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
DEAD = "dddddddd-0000-4000-8000-000000000004"

RUNNING_ON_B = ActiveExecution("old", B, "running")
WAITING = ActiveExecution("queued", A, "scheduled")


@pytest.mark.parametrize(
    ("policy", "active", "expected"),
    [
        ("allow", [], Admission("scheduled")),
        ("forbid", [], Admission("scheduled")),
        ("replace", [], Admission("scheduled")),
        ("allow", [RUNNING_ON_B, WAITING], Admission("scheduled")),
        (
            "forbid",
            [RUNNING_ON_B],
            Admission(
                "skipped",
                reason=f"concurrency forbid: execution old is still running on member {B}",
            ),
        ),
        (
            "forbid",
            [RUNNING_ON_B, WAITING],
            Admission(
                "skipped",
                reason=f"concurrency forbid: execution old is still running on member {B} "
                "(and 1 more)",
            ),
        ),
        (
            "replace",
            [WAITING, RUNNING_ON_B],
            Admission("scheduled", abort=("old", "queued"), abort_reason="replaced by new"),
        ),
        # the new execution itself never counts against itself
        ("forbid", [ActiveExecution("new", A, "scheduled")], Admission("scheduled")),
    ],
)
def test_decide_admission(policy: str, active: list[ActiveExecution], expected: Admission) -> None:
    assert decide_admission(policy, active, new_id="new") == expected


def test_decide_admission_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown concurrency policy 'sometimes'"):
        decide_admission("sometimes", [], new_id="new")


def _job(store: Store, concurrency: str, owner: str = A) -> str:
    return create_job(
        store, project="ops", group_name="", name=f"j-{concurrency}", command=["sleep", "3"],
        schedule="* * * * * *", modified_by=owner, now_ms=1, concurrency=concurrency,
    ).id  # fmt: skip


def _fire(store: Store, job_id: str, fire_ms: int, owner: str = A, epoch: int = 1) -> str:
    execution_id = fire_job(
        store, job_id=job_id, member_uuid=owner, owner_epoch=epoch, fire_ms=fire_ms,
        now_ms=fire_ms + 5,
    )  # fmt: skip
    assert execution_id is not None
    return execution_id


def test_new_jobs_default_to_forbid(store: Store) -> None:
    job = create_job(
        store, project="p", group_name="", name="n", command=["true"], schedule=None,
        modified_by=A, now_ms=1,
    )  # fmt: skip
    assert (job.concurrency, get_job(store, job.id).concurrency) == ("forbid", "forbid")


def test_forbid_records_a_fire_skipped_while_the_job_runs(store: Store) -> None:
    job_id = _job(store, "forbid")
    first = _fire(store, job_id, 1_000)
    assert start_execution(store, first, now_ms=1_010)
    skipped = record_fire(
        store, job_id=job_id, member_uuid=A, owner_epoch=1, fire_ms=2_000, now_ms=2_003
    )
    assert skipped is not None and skipped.status == "skipped" and skipped.aborted == ()
    row = get_execution(store, skipped.execution_id)
    assert (row.status, row.trigger, row.fire_ms, row.ended_ms) == (
        "skipped",
        "schedule",
        2_000,
        2_003,
    )
    assert row.reason == f"concurrency forbid: execution {first} is still running on member {A}"
    assert get_job(store, job_id).last_fire_ms == 2_000  # claimed: never fired twice
    assert (
        fire_job(store, job_id=job_id, member_uuid=A, owner_epoch=1, fire_ms=2_000, now_ms=2_004)
        is None
    )
    # once the run has ended, the next fire is scheduled
    finish_execution(store, first, status="succeeded", now_ms=2_500, exit_code=0)
    third = _fire(store, job_id, 3_000)
    assert get_execution(store, third).status == "scheduled"
    assert get_execution(store, first).status == "succeeded"


def test_forbid_counts_a_run_not_started_yet(store: Store) -> None:
    """An execution waiting for a slot (or a retry waiting for its delay) is the job still
    running: a second one would only pile up behind it."""
    job_id = _job(store, "forbid")
    waiting = _fire(store, job_id, 1_000)  # never started
    assert get_execution(store, _fire(store, job_id, 2_000)).status == "skipped"
    assert get_execution(store, waiting).status == "scheduled"


def test_forbid_holds_cluster_wide_until_recovery_settles_a_dead_owner(store: Store) -> None:
    """Taken over from a dead member whose run is still `running` in the store: the new owner
    skips its fires until the recovery marks that run incomplete."""
    job_id = _job(store, "forbid", owner=DEAD)
    on_dead = _fire(store, job_id, 1_000, owner=DEAD)
    start_execution(store, on_dead, now_ms=1_001)
    assert reassign_jobs(store, from_owner=DEAD, to_owner=B) == [job_id]
    skipped = get_execution(store, _fire(store, job_id, 2_000, owner=B, epoch=2))
    assert skipped.status == "skipped" and f"on member {DEAD}" in (skipped.reason or "")
    assert mark_incomplete(store, member_uuid=DEAD, now_ms=2_500) == [on_dead]
    assert get_execution(store, _fire(store, job_id, 3_000, owner=B, epoch=2)).status == "scheduled"


def test_replace_aborts_the_running_ones_in_the_fire_transaction(store: Store) -> None:
    job_id = _job(store, "replace")
    running = _fire(store, job_id, 1_000)
    start_execution(store, running, now_ms=1_001)
    fired = record_fire(
        store, job_id=job_id, member_uuid=A, owner_epoch=1, fire_ms=2_000, now_ms=2_002
    )
    assert fired is not None and fired.status == "scheduled" and fired.aborted == (running,)
    old = get_execution(store, running)
    assert (old.status, old.ended_ms, old.reason) == (
        "aborted",
        2_002,
        f"replaced by {fired.execution_id}",
    )
    # the runner of the replaced one finds it ended: no outcome written over it, no retry
    assert not finish_execution(store, running, status="failed", now_ms=2_100, exit_code=-15)
    assert get_execution(store, running).status == "aborted"
    assert get_execution(store, fired.execution_id).status == "scheduled"


def test_allow_overlaps(store: Store) -> None:
    job_id = _job(store, "allow")
    first = _fire(store, job_id, 1_000)
    start_execution(store, first, now_ms=1_001)
    second = _fire(store, job_id, 2_000)
    statuses = {e.id: e.status for e in list_executions(store, job_id=job_id)}
    assert statuses == {first: "running", second: "scheduled"}


def test_a_remote_run_is_admitted_by_the_same_policy(store: Store) -> None:
    job_id = _job(store, "forbid")
    running = _fire(store, job_id, 1_000)
    start_execution(store, running, now_ms=1_001)
    remote = admit_execution(
        store, job_id=job_id, member_uuid=B, trigger="remote", fire_ms=1_500, now_ms=1_500,
        execution_id="remote-1",
    )  # fmt: skip
    assert (remote.execution_id, remote.status) == ("remote-1", "skipped")
    assert get_execution(store, "remote-1").trigger == "remote"
    with pytest.raises(NotFoundError, match="job nope does not exist"):
        admit_execution(store, job_id="nope", member_uuid=B, trigger="remote", fire_ms=1, now_ms=1)


def test_other_jobs_and_ended_runs_do_not_count(store: Store) -> None:
    job_id = _job(store, "forbid")
    other = _job(store, "allow")
    start_execution(store, _fire(store, other, 1_000), now_ms=1_001)
    for status in ("succeeded", "failed", "aborted", "incomplete", "timedout", "skipped"):
        insert_execution(
            store, job_id=job_id, member_uuid=B, trigger="manual", fire_ms=500, now_ms=500,
            status=status,
        )  # fmt: skip
    assert get_execution(store, _fire(store, job_id, 2_000)).status == "scheduled"


def test_a_fire_and_a_remote_run_racing_never_both_run_under_forbid(
    db_url: str, store: Store
) -> None:
    """The fire's claim and the remote run both lock the job's row first, so on PostgreSQL
    (row locks) as on SQLite (one writer) one of them sees the other: one scheduled, one
    skipped, in every round."""
    job_id = _job(store, "forbid")
    rounds = 8
    engines = [create_store_engine(db_url) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=30)
    outcomes: list[list[str]] = [[], []]

    def fires() -> None:
        for n in range(rounds):
            barrier.wait()
            admitted = record_fire(
                Store(engines[0]), job_id=job_id, member_uuid=A, owner_epoch=1,
                fire_ms=(n + 1) * 1_000, now_ms=(n + 1) * 1_000,
            )  # fmt: skip
            assert admitted is not None
            outcomes[0].append(admitted.status)
            barrier.wait()

    def remote_runs() -> None:
        for n in range(rounds):
            barrier.wait()
            admitted = admit_execution(
                Store(engines[1]), job_id=job_id, member_uuid=B, trigger="remote",
                fire_ms=(n + 1) * 1_000, now_ms=(n + 1) * 1_000,
            )  # fmt: skip
            outcomes[1].append(admitted.status)
            barrier.wait()
            for e in list_executions(store, job_id=job_id, statuses=("scheduled",)):
                finish_execution(store, e.id, status="succeeded", now_ms=(n + 1) * 1_000 + 500)

    run_threads([fires, remote_runs], engines)
    assert len(outcomes[0]) == len(outcomes[1]) == rounds, outcomes
    for fired, remote in zip(*outcomes, strict=True):
        assert sorted((fired, remote)) == ["scheduled", "skipped"], outcomes
