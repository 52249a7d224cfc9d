"""Reports over executions: double fires (GROUP BY) and missed fire times, on a real store."""

from __future__ import annotations

import pytest

from workers.store import (
    MissedFires,
    Store,
    count_double_fires,
    count_executions_by_member,
    count_missed_fires,
    create_job,
    fire_times_by_job,
    insert_execution,
    missing_fire_times,
    split_missed_fires,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"


def _job(store: Store, name: str) -> str:
    job = create_job(
        store,
        project="demo",
        group_name="",
        name=name,
        command=["true"],
        schedule="* * * * * *",
        modified_by=A,
        now_ms=0,
    )
    return job.id


def _fire(
    store: Store, job_id: str, fire_ms: int, *, member: str = A, trigger: str = "schedule"
) -> None:
    insert_execution(
        store, job_id=job_id, member_uuid=member, trigger=trigger, fire_ms=fire_ms, now_ms=fire_ms
    )


def test_double_fires_count_pairs_fired_more_than_once(store: Store) -> None:
    one, two = _job(store, "one"), _job(store, "two")
    for fire_ms in (1_000, 2_000, 3_000):
        _fire(store, one, fire_ms)
        _fire(store, two, fire_ms)
    assert count_double_fires(store) == 0
    _fire(store, one, 2_000, member=B)  # a second member fired one's 2 s: a double fire
    _fire(store, one, 2_000, member=B)  # a third execution of the same pair: still one pair
    _fire(store, two, 3_000)
    assert count_double_fires(store) == 2


def test_retries_and_manual_runs_are_not_fires(store: Store) -> None:
    job_id = _job(store, "one")
    _fire(store, job_id, 1_000)
    _fire(store, job_id, 1_000, trigger="retry")
    _fire(store, job_id, 1_000, trigger="manual")
    assert count_double_fires(store) == 0
    assert fire_times_by_job(store) == {job_id: [1_000]}


def test_a_catchup_is_a_fire_of_its_schedule(store: Store) -> None:
    job_id = _job(store, "one")
    _fire(store, job_id, 1_000)
    _fire(store, job_id, 3_000, trigger="catchup")  # stands for 2 s and 3 s
    assert count_double_fires(store) == 0
    assert fire_times_by_job(store) == {job_id: [1_000, 3_000]}
    _fire(store, job_id, 3_000, member=B)  # 3 s fired again by another member: double
    assert count_double_fires(store) == 1


def test_fire_times_by_job_are_distinct_sorted_and_bounded(store: Store) -> None:
    one, two = _job(store, "one"), _job(store, "two")
    for fire_ms in (3_000, 1_000, 2_000, 2_000):
        _fire(store, one, fire_ms)
    _fire(store, two, 5_000, member=B)
    assert fire_times_by_job(store) == {one: [1_000, 2_000, 3_000], two: [5_000]}
    assert fire_times_by_job(store, since_ms=2_000, until_ms=4_000) == {one: [2_000, 3_000]}
    assert count_executions_by_member(store) == {A: 4, B: 1}
    assert count_executions_by_member(store, since_ms=3_000) == {A: 1, B: 1}


def test_missed_fires_are_split_by_the_excused_window(store: Store) -> None:
    one, two, three = _job(store, "one"), _job(store, "two"), _job(store, "three")
    for s in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10):  # complete
        _fire(store, one, s * 1000)
    for s in (1, 2, 6, 7, 9, 10):  # 3, 4, 5 while its owner was dead; 8 missed
        _fire(store, two, s * 1000)
    for s in (1, 3):  # 2 missed, no excused window
        _fire(store, three, s * 1000)
    result = count_missed_fires(store, excused={two: (2_500, 5_999), three: (10_000, 20_000)})
    assert result == MissedFires(missed={two: 1, three: 1}, excused={two: 3})
    assert (result.missed_total, result.excused_total) == (2, 3)
    # the observed range is bounded: before 6 s, only job two's 8 s is missing
    later = count_missed_fires(store, since_ms=6_000, excused={two: (2_500, 5_999)})
    assert later == MissedFires(missed={two: 1}, excused={})


def test_missing_fire_times_is_pure_and_checks_the_period() -> None:
    assert missing_fire_times([]) == []
    assert missing_fire_times([5_000]) == []
    assert missing_fire_times([1_000, 4_000, 5_000]) == [2_000, 3_000]
    assert missing_fire_times([0, 1_500], period_ms=500) == [500, 1_000]
    with pytest.raises(ValueError, match="period_ms"):
        missing_fire_times([0, 1_000], period_ms=0)
    assert split_missed_fires({"j": [0, 3_000]}, excused={"j": (1_000, 1_000)}) == MissedFires(
        missed={"j": 1}, excused={"j": 1}
    )
