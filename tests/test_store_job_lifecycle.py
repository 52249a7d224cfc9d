"""Jobs as operators manage them, in the store: the enabled flags (and the fence and remote
runs that obey them), modifications without a member, the "already exists" error naming the
existing job, the resolver, deletion (history kept, no retry, name free, retention), and
the fence's catch-up records."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from schemas.errors import ConflictError, NotFoundError
from schemas.tables import scheduled_jobs
from workers.store import (
    NewExecution,
    Store,
    admit_execution,
    claim_fire,
    count_jobs_by_owner,
    create_job,
    delete_expired_executions,
    delete_job,
    find_job,
    finish_execution,
    get_execution,
    get_job,
    insert_execution,
    list_executions,
    list_jobs,
    purge_deleted_jobs,
    reassign_jobs,
    record_fire,
    start_execution,
    update_job,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"


def _job(store: Store, name: str = "backup", *, group: str = "nightly", **kwargs: object) -> str:
    return create_job(
        store,
        project="ops",
        group_name=group,
        name=name,
        command=["true"],
        schedule="* * * * * *",
        modified_by=A,
        now_ms=1_000,
        **kwargs,  # type: ignore[arg-type]
    ).id


def _claim(store: Store, job_id: str, epoch: int, fire_ms: int, member: str = A) -> bool:
    return claim_fire(
        store, job_id=job_id, member_uuid=member, owner_epoch=epoch, fire_ms=fire_ms, now_ms=1
    )


# ---- enabled flags -----------------------------------------------------------------------


def test_the_flags_and_enabled_their_and(store: Store) -> None:
    job_id = _job(store, execution_enabled=False)
    job = get_job(store, job_id)
    assert (job.schedule_enabled, job.execution_enabled, job.enabled) == (True, False, False)
    job = update_job(store, job_id, modified_by=None, now_ms=2_000, execution_enabled=True)
    assert (job.schedule_enabled, job.execution_enabled, job.enabled) == (True, True, True)
    job = update_job(store, job_id, modified_by=None, now_ms=3_000, schedule_enabled=False)
    assert (job.schedule_enabled, job.execution_enabled, job.enabled) == (False, True, False)
    with store.begin() as conn:
        assert conn.execute(scheduled_jobs.select()).mappings().one()["enabled"] in (False, 0)


def test_a_row_the_previous_release_wrote_disabled_reads_as_a_disabled_schedule(
    store: Store,
) -> None:
    job_id = _job(store)
    with store.begin() as conn:  # the previous release writes `enabled` only
        conn.execute(update(scheduled_jobs).values(enabled=False))
    job = get_job(store, job_id)
    assert (job.schedule_enabled, job.execution_enabled, job.enabled) == (False, True, False)
    job = update_job(store, job_id, modified_by=None, now_ms=2_000, execution_enabled=False)
    assert (job.schedule_enabled, job.execution_enabled) == (False, False)  # made explicit
    job = update_job(store, job_id, modified_by=None, now_ms=3_000, execution_enabled=True)
    assert (job.schedule_enabled, job.enabled) == (False, False)


@pytest.mark.parametrize("flag", ["schedule_enabled", "execution_enabled"])
def test_the_fence_refuses_a_fire_when_either_flag_is_off(store: Store, flag: str) -> None:
    job_id = _job(store)
    update_job(store, job_id, modified_by=A, now_ms=2_000, **{flag: False})
    assert _claim(store, job_id, 2, 60_000) is False
    update_job(store, job_id, modified_by=A, now_ms=3_000, **{flag: True})
    assert _claim(store, job_id, 3, 60_000) is True


def test_a_remote_run_of_a_job_whose_execution_is_disabled_is_refused(store: Store) -> None:
    job_id = _job(store, execution_enabled=False)
    with pytest.raises(ConflictError, match="its executions are disabled"):
        admit_execution(store, job_id=job_id, member_uuid=B, trigger="remote", fire_ms=5, now_ms=5)
    assert list_executions(store, job_id=job_id) == []
    update_job(store, job_id, modified_by=None, now_ms=2_000, schedule_enabled=False)
    with pytest.raises(ConflictError):  # the schedule's flag does not matter, this one does
        admit_execution(store, job_id=job_id, member_uuid=B, trigger="remote", fire_ms=5, now_ms=5)
    update_job(store, job_id, modified_by=None, now_ms=3_000, execution_enabled=True)
    admitted = admit_execution(
        store, job_id=job_id, member_uuid=B, trigger="remote", fire_ms=5, now_ms=5
    )
    assert admitted.status == "scheduled"


def test_no_retry_for_a_job_whose_execution_was_disabled(store: Store) -> None:
    job_id = _job(store, retry_count=2)
    run = insert_execution(
        store, job_id=job_id, member_uuid=A, trigger="schedule", fire_ms=5, now_ms=5
    )
    start_execution(store, run, now_ms=6)
    update_job(store, job_id, modified_by=None, now_ms=7, execution_enabled=False)
    retry = NewExecution("retry-1", job_id, A, fire_ms=10, attempt=2, retry_of=run)
    assert finish_execution(store, run, status="failed", now_ms=8, exit_code=1, retry=retry)
    assert [e.id for e in list_executions(store, job_id=job_id)] == [run]


# ---- modifications ---------------------------------------------------------------------


def test_a_modification_without_a_member_keeps_the_owner_and_bumps_the_epoch(
    store: Store,
) -> None:
    job_id = _job(store)
    job = update_job(store, job_id, modified_by=None, now_ms=2_000, retry_count=3)
    assert (job.owner_uuid, job.modified_by, job.owner_epoch, job.retry_count) == (A, A, 2, 3)
    assert job.modified_ms == 2_000
    assert _claim(store, job_id, 1, 60_000) is False  # the owner's old plan is refused
    assert _claim(store, job_id, 2, 60_000) is True


def test_a_modification_through_a_member_makes_it_the_owner(store: Store) -> None:
    job_id = _job(store)
    job = update_job(store, job_id, modified_by=B, now_ms=2_000, timeout_s=5.0)
    assert (job.owner_uuid, job.modified_by, job.owner_epoch) == (B, B, 2)
    assert _claim(store, job_id, 1, 60_000, member=A) is False
    assert _claim(store, job_id, 2, 60_000, member=B) is True


def test_a_schedule_change_settles_the_times_before_it(store: Store) -> None:
    job_id = _job(store)
    assert _claim(store, job_id, 1, 5_000)
    job = update_job(store, job_id, modified_by=None, now_ms=9_000, retry_count=1)
    assert job.last_fire_ms == 5_000  # not settling: a fire_once job catches them up
    job = update_job(store, job_id, modified_by=None, now_ms=9_000, schedule="*/2 * * * * *")
    assert job.last_fire_ms == 9_000
    job = update_job(store, job_id, modified_by=None, now_ms=8_000, time_zone="Europe/Paris")
    assert (job.last_fire_ms, job.time_zone) == (9_000, "Europe/Paris")  # never back


def test_already_exists_names_the_existing_job(store: Store) -> None:
    existing = _job(store)
    new_id = "11111111-2222-4333-8444-555555555555"
    with pytest.raises(ConflictError) as caught:
        _job(store, job_id=new_id)
    assert str(caught.value) == f"job ops/nightly/backup (id {existing}) already exists"
    assert caught.value.existing_id == existing
    other = _job(store, "other")
    with pytest.raises(ConflictError, match=f"job ops/nightly/backup \\(id {existing}\\)"):
        update_job(store, other, modified_by=None, now_ms=2_000, name="backup")
    with pytest.raises(ConflictError, match=f"a job with id {other} already exists"):
        _job(store, "third", job_id=other)


def test_find_job_by_id_or_path(store: Store) -> None:
    grouped = _job(store, group="a/b")
    flat = _job(store, "flat", group="")
    assert find_job(store, grouped).id == grouped
    assert find_job(store, "ops/a/b/backup").id == grouped
    assert find_job(store, " ops/flat ").id == flat
    for ref in ("ops/backup", "ops/a/backup", "nope", "/flat", "ops/"):
        with pytest.raises(NotFoundError, match=repr(ref)):
            find_job(store, ref)


# ---- deletion ------------------------------------------------------------------------------


def test_delete_keeps_history_frees_the_name_and_stops_everything(store: Store) -> None:
    job_id = _job(store, retry_count=1)
    running = insert_execution(
        store, job_id=job_id, member_uuid=A, trigger="schedule", fire_ms=5, now_ms=5
    )
    start_execution(store, running, now_ms=6)
    waiting = insert_execution(
        store, job_id=job_id, member_uuid=A, trigger="retry", fire_ms=9_000, now_ms=7
    )
    deleted = delete_job(store, job_id, modified_by=B, now_ms=8)
    assert (deleted.aborted, deleted.running) == ((waiting,), (running,))
    assert (deleted.job.deleted_ms, deleted.job.owner_uuid, deleted.job.modified_by) == (8, "", B)
    assert get_execution(store, waiting).reason == "job deleted"
    # gone for every reader and writer; found by id when asked for
    assert list_jobs(store) == [] and count_jobs_by_owner(store) == {}
    with pytest.raises(NotFoundError):
        get_job(store, job_id)
    assert get_job(store, job_id, include_deleted=True).name == "backup"
    with pytest.raises(NotFoundError):
        find_job(store, "ops/nightly/backup")
    assert find_job(store, job_id, include_deleted=True).id == job_id
    with pytest.raises(NotFoundError):
        update_job(store, job_id, modified_by=A, now_ms=9, retry_count=0)
    with pytest.raises(NotFoundError):
        delete_job(store, job_id, modified_by=A, now_ms=9)
    assert _claim(store, job_id, deleted.job.owner_epoch, 60_000, member="") is False
    with pytest.raises(NotFoundError):
        admit_execution(store, job_id=job_id, member_uuid=A, trigger="remote", fire_ms=5, now_ms=5)
    assert reassign_jobs(store, from_owner="", to_owner=A) == []
    # the running execution finishes and is recorded, without a retry
    retry = NewExecution("r2", job_id, A, fire_ms=10, attempt=2, retry_of=running)
    assert finish_execution(store, running, status="failed", now_ms=10, exit_code=1, retry=retry)
    assert {e.id for e in list_executions(store, job_id=job_id)} == {running, waiting}
    # the name can be used at once
    again = _job(store)
    assert again != job_id and find_job(store, "ops/nightly/backup").id == again


def test_retention_removes_a_deleted_job_with_its_last_execution(store: Store) -> None:
    job_id = _job(store)
    run = insert_execution(
        store, job_id=job_id, member_uuid=A, trigger="schedule", fire_ms=5, now_ms=5
    )
    finish_execution(store, run, status="succeeded", now_ms=6, exit_code=0)
    delete_job(store, job_id, modified_by=None, now_ms=7)
    assert purge_deleted_jobs(store, deleted_before_ms=100) == 0  # its execution refers to it
    assert delete_expired_executions(store, ended_before_ms=100) == 1
    assert purge_deleted_jobs(store, deleted_before_ms=7) == 0  # deleted at 7: not before
    assert purge_deleted_jobs(store, deleted_before_ms=100) == 1
    with pytest.raises(NotFoundError):
        get_job(store, job_id, include_deleted=True)


# ---- catch-up ------------------------------------------------------------------------------


def test_a_catchup_is_claimed_once_and_records_its_missed_times(store: Store) -> None:
    job_id = _job(store, misfire="fire_once")
    reassign_jobs(store, from_owner=A, to_owner=B)  # A was cut off; B owns it at epoch 2
    missed = (2_000, 3_000, 4_000)
    kwargs = {"job_id": job_id, "fire_ms": 4_000, "now_ms": 4_500, "trigger": "catchup"}
    refused = record_fire(store, member_uuid=A, owner_epoch=1, missed_ms=missed, **kwargs)  # type: ignore[arg-type]
    assert refused is None  # the member that came back runs no catch-up
    admitted = record_fire(store, member_uuid=B, owner_epoch=2, missed_ms=missed, **kwargs)  # type: ignore[arg-type]
    assert admitted is not None
    run = get_execution(store, admitted.execution_id)
    assert (run.trigger, run.missed_ms, run.fire_ms, run.owner_epoch) == (
        "catchup",
        missed,
        4_000,
        2,
    )
    assert run.reason == (
        "catch-up of 3 missed fire time(s): 1970-01-01T00:00:02+00:00 to 1970-01-01T00:00:04+00:00"
    )
    again = record_fire(store, member_uuid=B, owner_epoch=2, missed_ms=missed, **kwargs)  # type: ignore[arg-type]
    assert again is None  # claimed: never twice
    assert _claim(store, job_id, 2, 3_000, member=B) is False  # nor an older time
