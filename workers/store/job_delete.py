"""Deleting a job: its row stays, marked, until retention removes it with its history.

``executions.job_id`` refers to ``scheduled_jobs.id`` (a foreign key), and a deleted job's
executions stay until retention removes them: so :func:`delete_job` keeps the row, with
``deleted_ms`` set and both enabled flags false. In the same transaction:

* the job's ``owner_epoch`` grows by one and its owner becomes ``''`` (:data:`NO_OWNER`):
  no member owns it any more, so no member plans it (those of the previous release
  included: their list of owned jobs no longer has it) and no takeover moves it; its
  owner's plan is refused by the fence from the commit on (the flags refuse any fire
  anyway); it is no longer fired, run or retried; ``modified_by`` is the member that
  deleted it, when one did;
* its executions not started yet (``scheduled``: waiting for a slot, a retry waiting for
  its delay) become ``aborted`` with the reason ``job deleted``;
* its running executions go on: they finish and are recorded as usual, but no retry
  follows (``workers.store.executions.insert_executions`` skips retries of a job that is
  deleted or whose executions are disabled). ``--abort`` aborts them through the abort
  path, after the commit (``workers.commands.issue.request_abort``).

Every reader of the store's jobs sees live jobs only; the row is found by its id with
``get_job(include_deleted=True)`` (``qwc executions show`` names the deleted job). The
unique index over (project, group, name) covers live rows only: the name can be used again
at once. :func:`purge_deleted_jobs` (run by the retention pass after the executions)
removes deleted rows that no execution refers to any more. Times are epoch ms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, exists, select

from schemas.errors import NotFoundError
from schemas.tables import executions, scheduled_jobs
from workers.store._db import Db, writing
from workers.store.jobs import JobRow, live

__all__ = ["DELETED_REASON", "NO_OWNER", "DeletedJob", "delete_job", "purge_deleted_jobs"]

log = logging.getLogger(__name__)

DELETED_REASON = "job deleted"
NO_OWNER = ""  # the owner of a deleted job: no member's uuid

_t, _e = scheduled_jobs, executions


@dataclass(frozen=True)
class DeletedJob:
    """What :func:`delete_job` did: the job as it is now (``deleted_ms`` set), the ids of
    its executions that were waiting (now ``aborted``) and of those still running."""

    job: JobRow
    aborted: tuple[str, ...]
    running: tuple[str, ...]


def delete_job(db: Db, job_id: str, *, modified_by: str | None, now_ms: int) -> DeletedJob:
    """Delete live job ``job_id`` at ``now_ms`` (see the module docstring); ``modified_by``
    becomes its last modifier when given. One transaction. Raises ``NotFoundError`` when
    no live job has that id."""
    values: dict[str, object] = {
        "owner_uuid": NO_OWNER,
        "deleted_ms": now_ms,
        "enabled": False,
        "schedule_enabled": False,
        "execution_enabled": False,
        "next_fire_ms": None,
        "owner_epoch": _t.c.owner_epoch + 1,
        "modified_ms": now_ms,
    }
    if modified_by is not None:
        values["modified_by"] = modified_by
    stmt = _t.update().where(_t.c.id == job_id, live()).values(values).returning(*_t.c)
    waiting = (
        _e.update()
        .where(_e.c.job_id == job_id, _e.c.status == "scheduled")
        .values(status="aborted", ended_ms=now_ms, reason=DELETED_REASON)
        .returning(_e.c.id)
    )
    running = select(_e.c.id).where(_e.c.job_id == job_id, _e.c.status == "running")
    with writing(db) as conn:
        row = conn.execute(stmt).mappings().one_or_none()
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist")
        aborted = tuple(sorted(conn.execute(waiting).scalars()))
        still = tuple(sorted(conn.execute(running).scalars()))
    log.info(
        "job %s: deleted (%s waiting execution(s) aborted, %s running)",
        job_id,
        len(aborted),
        len(still),
    )
    return DeletedJob(JobRow.from_mapping(row), aborted, still)


def purge_deleted_jobs(db: Db, *, deleted_before_ms: int) -> int:
    """Remove the rows of jobs deleted before ``deleted_before_ms`` that no execution
    refers to any more (retention deleted the last of them); returns how many went."""
    referred = exists().where(_e.c.job_id == _t.c.id)
    stmt = delete(_t).where(_t.c.deleted_ms < deleted_before_ms, ~referred)
    with writing(db) as conn:
        purged: int = conn.execute(stmt).rowcount
    if purged:
        log.info("retention: %s deleted job(s) without executions removed", purged)
    return purged
