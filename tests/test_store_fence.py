"""The fire fence: one conditional UPDATE decides who fires; racing fires insert one execution."""

from __future__ import annotations

import functools
import threading

from sqlalchemy import func, select

from schemas.tables import executions
from tests.fixtures_sql import run_threads
from workers.store import (
    FireClaim,
    Store,
    claim_fire,
    claim_fires,
    create_job,
    create_store_engine,
    fire_job,
    get_execution,
    get_job,
    list_executions,
    reassign_jobs,
    set_next_fire_ms,
    update_job,
)

OWNER = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"


def _job(store: Store) -> str:
    job = create_job(
        store,
        project="ops",
        group_name="",
        name="backup",
        command=["backup"],
        schedule="* * * * *",
        modified_by=OWNER,
        now_ms=1_000,
    )
    return job.id


def _claim(store: Store, job_id: str, member: str, epoch: int, fire_ms: int) -> bool:
    return claim_fire(
        store, job_id=job_id, member_uuid=member, owner_epoch=epoch, fire_ms=fire_ms, now_ms=5
    )


def test_owner_claims_a_fire_time_once(store: Store) -> None:
    job_id = _job(store)
    assert _claim(store, job_id, OWNER, 1, 60_000) is True
    assert get_job(store, job_id).last_fire_ms == 60_000
    assert _claim(store, job_id, OWNER, 1, 60_000) is False
    assert _claim(store, job_id, OWNER, 1, 120_000) is True


def test_an_earlier_fire_time_after_a_later_one_is_refused(store: Store) -> None:
    job_id = _job(store)
    assert _claim(store, job_id, OWNER, 1, 120_000) is True
    assert _claim(store, job_id, OWNER, 1, 60_000) is False
    assert get_job(store, job_id).last_fire_ms == 120_000


def test_non_owner_and_stale_epoch_change_nothing(store: Store) -> None:
    job_id = _job(store)
    assert _claim(store, job_id, OTHER, 1, 60_000) is False
    assert _claim(store, job_id, OWNER, 2, 60_000) is False
    assert get_job(store, job_id).last_fire_ms is None
    # Taken over: the old owner (even at its old epoch) is fenced out, the new one fires.
    reassign_jobs(store, from_owner=OWNER, to_owner=OTHER)
    assert _claim(store, job_id, OWNER, 1, 60_000) is False
    assert _claim(store, job_id, OTHER, 1, 60_000) is False
    assert _claim(store, job_id, OTHER, 2, 60_000) is True


def test_a_claim_adds_its_missed_fires_only_for_the_owner_at_its_epoch(store: Store) -> None:
    job_id = _job(store)

    def claim(member: str, epoch: int, fire_ms: int, missed: int) -> bool:
        fire = FireClaim(job_id, epoch, fire_ms, fire_ms + 60_000, missed_fires=missed)
        return fire in claim_fires(store, [fire], member_uuid=member, now_ms=5)

    assert claim(OWNER, 1, 600_000, 9) is True
    assert claim(OWNER, 1, 600_000, 9) is False  # that time again: not counted twice
    reassign_jobs(store, from_owner=OWNER, to_owner=OTHER)
    assert claim(OWNER, 1, 660_000, 5) is False  # fenced out: counts nothing
    assert claim(OTHER, 2, 720_000, 2) is True
    assert claim(OTHER, 2, 780_000, 0) is True
    assert get_job(store, job_id).missed_fires == 11


def test_a_last_fire_claimed_alone_leaves_no_next_time(store: Store) -> None:
    """The last time of a schedule has no next one: its claim plans none (on PostgreSQL a
    batch whose next times were all NULL was refused: text is not bigint)."""
    job_id = _job(store)
    first = FireClaim(job_id, 1, 600_000, 660_000)
    assert first in claim_fires(store, [first], member_uuid=OWNER, now_ms=5)
    last = FireClaim(job_id, 1, 660_000, None)
    assert last in claim_fires(store, [last], member_uuid=OWNER, now_ms=6)
    job = get_job(store, job_id)
    assert (job.last_fire_ms, job.next_fire_ms) == (660_000, None)


def test_disabled_or_missing_job_is_not_fired(store: Store) -> None:
    job_id = _job(store)
    update_job(store, job_id, modified_by=OWNER, now_ms=2_000, enabled=False)
    assert _claim(store, job_id, OWNER, 2, 60_000) is False
    assert _claim(store, "no-such-job", OWNER, 1, 60_000) is False


def test_fire_job_inserts_the_execution_in_the_claim_transaction(store: Store) -> None:
    job_id = _job(store)
    execution_id = fire_job(
        store, job_id=job_id, member_uuid=OWNER, owner_epoch=1, fire_ms=60_000, now_ms=60_010
    )
    assert execution_id is not None
    row = get_execution(store, execution_id)
    assert (row.job_id, row.member_uuid, row.status, row.trigger) == (
        job_id,
        OWNER,
        "scheduled",
        "schedule",
    )
    assert (row.fire_ms, row.owner_epoch, row.created_ms, row.attempt) == (60_000, 1, 60_010, 1)
    refused = fire_job(
        store, job_id=job_id, member_uuid=OWNER, owner_epoch=1, fire_ms=60_000, now_ms=60_020
    )
    assert refused is None
    assert len(list_executions(store, job_id=job_id)) == 1


def test_racing_fires_of_one_time_insert_exactly_one_execution(db_url: str, store: Store) -> None:
    job_id = _job(store)
    racers, fire_times = 4, [60_000 * n for n in range(1, 6)]
    engines = [create_store_engine(db_url) for _ in range(racers)]
    results: list[list[str | None]] = [[] for _ in range(racers)]
    barrier = threading.Barrier(racers, timeout=30)

    def race(index: int) -> None:
        racer = Store(engines[index])
        for fire_ms in fire_times:
            barrier.wait()
            results[index].append(
                fire_job(
                    racer,
                    job_id=job_id,
                    member_uuid=OWNER,
                    owner_epoch=1,
                    fire_ms=fire_ms,
                    now_ms=fire_ms + 1,
                )
            )

    run_threads([functools.partial(race, i) for i in range(racers)], engines)
    assert all(len(r) == len(fire_times) for r in results), results
    for round_index in range(len(fire_times)):
        winners = [r[round_index] for r in results if r[round_index] is not None]
        assert len(winners) == 1, (round_index, results)
    with store.connect() as conn:
        per_fire = conn.execute(
            select(executions.c.fire_ms, func.count()).group_by(executions.c.fire_ms)
        ).all()
    assert sorted((fire_ms, count) for fire_ms, count in per_fire) == [
        (fire_ms, 1) for fire_ms in fire_times
    ]


def test_set_next_fire_ms_is_fenced(store: Store) -> None:
    job_id = _job(store)
    assert set_next_fire_ms(
        store, job_id=job_id, member_uuid=OWNER, owner_epoch=1, next_fire_ms=60_000
    )
    assert not set_next_fire_ms(
        store, job_id=job_id, member_uuid=OTHER, owner_epoch=1, next_fire_ms=1
    )
    assert get_job(store, job_id).next_fire_ms == 60_000
