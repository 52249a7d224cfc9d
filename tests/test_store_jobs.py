"""Scheduled jobs: the modifying member becomes owner, every owner change bumps the epoch."""

from __future__ import annotations

import pytest

from schemas.errors import NotFoundError, StoreError
from workers.store import (
    Store,
    count_jobs_by_owner,
    create_job,
    get_job,
    list_jobs,
    reassign_jobs,
    update_job,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"


def _job(store: Store, name: str, owner: str = A, **kwargs: object) -> str:
    job = create_job(
        store,
        project="ops",
        group_name="nightly",
        name=name,
        command=["backup", "--all"],
        schedule="0 2 * * *",
        modified_by=owner,
        now_ms=1_000,
        **kwargs,  # type: ignore[arg-type]
    )
    return job.id


def test_create_makes_the_modifier_owner_at_epoch_1(store: Store) -> None:
    job = create_job(
        store,
        project="ops",
        group_name="",
        name="backup",
        command=["backup", "--all"],
        schedule=None,
        modified_by=A,
        now_ms=1_000,
        retry_count=2,
        retry_delay_s=1.5,
        job_id="11111111-2222-4333-8444-555555555555",
    )
    assert job.id == "11111111-2222-4333-8444-555555555555"
    assert (job.owner_uuid, job.owner_epoch, job.modified_by) == (A, 1, A)
    assert (job.created_ms, job.modified_ms, job.last_fire_ms) == (1_000, 1_000, None)
    assert job.command == ("backup", "--all")
    assert (job.retry_count, job.retry_delay_s, job.schedule, job.enabled) == (2, 1.5, None, True)
    assert get_job(store, job.id) == job


def test_update_moves_ownership_and_bumps_the_epoch_once(store: Store) -> None:
    job_id = _job(store, "backup")
    updated = update_job(store, job_id, modified_by=B, now_ms=2_000, schedule="0 3 * * *")
    assert (updated.owner_uuid, updated.owner_epoch, updated.modified_by) == (B, 2, B)
    assert (updated.schedule, updated.modified_ms, updated.created_ms) == (
        "0 3 * * *",
        2_000,
        1_000,
    )
    again = update_job(store, job_id, modified_by=B, now_ms=3_000, command=["x"], enabled=False)
    assert (again.owner_epoch, again.command, again.enabled) == (3, ("x",), False)
    assert get_job(store, job_id) == again


def test_update_refuses_unknown_fields_and_missing_jobs(store: Store) -> None:
    job_id = _job(store, "backup")
    with pytest.raises(ValueError, match="owner_uuid"):
        update_job(store, job_id, modified_by=B, now_ms=2_000, owner_uuid=C)
    with pytest.raises(NotFoundError):
        update_job(store, "nope", modified_by=B, now_ms=2_000, enabled=False)
    with pytest.raises(NotFoundError):
        get_job(store, "nope")
    assert get_job(store, job_id).owner_epoch == 1


def test_project_group_name_is_unique(store: Store) -> None:
    _job(store, "backup")
    with pytest.raises(StoreError, match="already exists"):
        _job(store, "backup", owner=B)
    other = _job(store, "other")
    with pytest.raises(StoreError):
        update_job(store, other, modified_by=B, now_ms=2_000, name="backup")
    assert get_job(store, other).name == "other"


def test_list_and_count_by_owner(store: Store) -> None:
    first = _job(store, "a")
    _job(store, "b", owner=B)
    _job(store, "c", owner=B, enabled=False)
    assert [j.name for j in list_jobs(store)] == ["a", "b", "c"]
    assert [j.name for j in list_jobs(store, owner_uuid=B)] == ["b", "c"]
    assert [j.name for j in list_jobs(store, owner_uuid=B, enabled=True)] == ["b"]
    assert [j.id for j in list_jobs(store, project="ops", name="a")] == [first]
    assert list_jobs(store, project="other") == []
    assert count_jobs_by_owner(store) == {A: 1, B: 2}


def test_reassign_moves_only_the_old_owners_jobs_and_bumps_epochs(store: Store) -> None:
    a1, a2, b1 = _job(store, "a1"), _job(store, "a2"), _job(store, "b1", owner=B)
    assert reassign_jobs(store, from_owner=A, to_owner=C, job_ids=[a1, b1]) == [a1]
    assert reassign_jobs(store, from_owner=A, to_owner=B) == [a2]
    assert reassign_jobs(store, from_owner=A, to_owner=B) == []
    assert (get_job(store, a1).owner_uuid, get_job(store, a1).owner_epoch) == (C, 2)
    assert (get_job(store, a2).owner_uuid, get_job(store, a2).owner_epoch) == (B, 2)
    assert get_job(store, b1).owner_epoch == 1
    assert get_job(store, a1).modified_by == A  # a takeover is not a modification
