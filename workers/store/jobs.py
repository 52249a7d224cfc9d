"""Scheduled jobs: create, modify, read, and move between owners.

Ownership rule of the product: a job is owned by the last member that modified it. So
``create_job`` and ``update_job`` make the modifying member the owner, and every change of
owner increments ``owner_epoch`` in the same statement — the epoch is what the fire fence
(``workers.store.fence``) checks.

What a job runs is its ``executor`` kind with, for ``command``, the argv in ``command`` and,
for the other kinds (``shell``, ``http``, ``python``), the parameters in ``executor_spec``
(validated by ``workers.jobs.executor`` before they get here). ``timeout_s`` (None: none) and
``concurrency`` (``allow|forbid|replace``, applied by the fence) are per job too.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import RowMapping, func, select
from sqlalchemy.exc import IntegrityError

from schemas.errors import NotFoundError, StoreError
from schemas.tables import CONCURRENCY_POLICIES, EXECUTOR_KINDS, scheduled_jobs
from workers.store._db import Db, reading, writing

__all__ = [
    "DEFAULT_CONCURRENCY",
    "UPDATABLE_FIELDS",
    "JobRow",
    "count_jobs_by_owner",
    "create_job",
    "get_job",
    "list_jobs",
    "reassign_jobs",
    "update_job",
]

log = logging.getLogger(__name__)

UPDATABLE_FIELDS = frozenset(
    {
        "project",
        "group_name",
        "name",
        "command",
        "schedule",
        "enabled",
        "retry_count",
        "retry_delay_s",
        "next_fire_ms",
        "executor",
        "executor_spec",
        "timeout_s",
        "concurrency",
    }
)
DEFAULT_CONCURRENCY: Final = "forbid"  # a new job, as Rundeck's multipleExecutions: false

_t = scheduled_jobs


@dataclass(frozen=True)
class JobRow:
    """One ``scheduled_jobs`` row. ``command`` is the decoded argv (executor ``command``;
    empty for the other kinds, whose parameters are ``executor_spec``); times are epoch ms;
    ``timeout_s`` None means no timeout."""

    id: str
    project: str
    group_name: str
    name: str
    command: tuple[str, ...]
    schedule: str | None
    enabled: bool
    owner_uuid: str
    owner_epoch: int
    retry_count: int
    retry_delay_s: float
    next_fire_ms: int | None
    last_fire_ms: int | None
    modified_by: str
    modified_ms: int
    created_ms: int
    executor: str = "command"
    executor_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timeout_s: float | None = None
    concurrency: str = DEFAULT_CONCURRENCY

    @classmethod
    def from_mapping(cls, row: RowMapping) -> JobRow:
        """Build from a row of ``scheduled_jobs`` (all columns)."""
        values = dict(row)
        values["command"] = tuple(values["command"])
        values["enabled"] = bool(values["enabled"])
        values["retry_delay_s"] = float(values["retry_delay_s"])
        if values["timeout_s"] is not None:
            values["timeout_s"] = float(values["timeout_s"])
        return cls(**values)


def create_job(
    db: Db,
    *,
    project: str,
    group_name: str,
    name: str,
    command: Sequence[str],
    schedule: str | None,
    modified_by: str,
    now_ms: int,
    enabled: bool = True,
    retry_count: int = 0,
    retry_delay_s: float = 0.0,
    job_id: str | None = None,
    executor: str = "command",
    executor_spec: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    concurrency: str = DEFAULT_CONCURRENCY,
) -> JobRow:
    """Insert a job owned by ``modified_by`` at ``owner_epoch`` 1; ``now_ms`` is epoch ms.

    ``group_name`` is ``""`` for an ungrouped job. ``schedule`` is a cron text, or None for a
    job run on demand only. ``command`` is the argv of a ``command`` job (``[]`` for the
    other executors, whose parameters are ``executor_spec``). Raises ``ValueError`` for an
    unknown executor or concurrency policy, ``StoreError`` when (project, group_name, name)
    or the id already exists.
    """
    _check_kinds(executor, concurrency)
    values: dict[str, Any] = {
        "id": job_id or str(uuid.uuid4()),
        "project": project,
        "group_name": group_name,
        "name": name,
        "command": list(command),
        "schedule": schedule,
        "enabled": enabled,
        "owner_uuid": modified_by,
        "owner_epoch": 1,
        "retry_count": retry_count,
        "retry_delay_s": retry_delay_s,
        "modified_by": modified_by,
        "modified_ms": now_ms,
        "created_ms": now_ms,
        "executor": executor,
        "executor_spec": dict(executor_spec or {}),
        "timeout_s": timeout_s,
        "concurrency": concurrency,
    }
    try:
        with writing(db) as conn:
            row = conn.execute(_t.insert().values(values).returning(*_t.c)).mappings().one()
    except IntegrityError as exc:
        where = f"{project}/{group_name}/{name}" if group_name else f"{project}/{name}"
        raise StoreError(f"job {where} (id {values['id']}) already exists") from exc
    log.info("job %s: created by %s", values["id"], modified_by)
    return JobRow.from_mapping(row)


def update_job(db: Db, job_id: str, *, modified_by: str, now_ms: int, **changes: Any) -> JobRow:
    """Modify a job; ``modified_by`` becomes its owner and ``owner_epoch`` grows by one.

    ``changes`` are fields of ``UPDATABLE_FIELDS``. One UPDATE statement, so the owner and
    epoch change atomically with the fields. Raises ``ValueError`` for an unknown field,
    ``NotFoundError`` when the job does not exist, ``StoreError`` when the new
    (project, group_name, name) is taken.
    """
    unknown = sorted(set(changes) - UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(f"cannot update job field(s) {', '.join(unknown)}")
    _check_kinds(changes.get("executor", "command"), changes.get("concurrency", "allow"))
    if "command" in changes:
        changes["command"] = list(changes["command"])
    if "executor_spec" in changes:
        changes["executor_spec"] = dict(changes["executor_spec"])
    stmt = (
        _t.update()
        .where(_t.c.id == job_id)
        .values(
            **changes,
            owner_uuid=modified_by,
            owner_epoch=_t.c.owner_epoch + 1,
            modified_by=modified_by,
            modified_ms=now_ms,
        )
        .returning(*_t.c)
    )
    try:
        with writing(db) as conn:
            row = conn.execute(stmt).mappings().one_or_none()
    except IntegrityError as exc:
        raise StoreError(f"job {job_id}: another job has that project/group/name") from exc
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    log.info("job %s: modified by %s, epoch %s", job_id, modified_by, row["owner_epoch"])
    return JobRow.from_mapping(row)


def _check_kinds(executor: str, concurrency: str) -> None:
    """``ValueError`` for an executor kind or concurrency policy the table refuses."""
    if executor not in EXECUTOR_KINDS:
        raise ValueError(f"unknown executor {executor!r}; one of {', '.join(EXECUTOR_KINDS)}")
    if concurrency not in CONCURRENCY_POLICIES:
        allowed = ", ".join(CONCURRENCY_POLICIES)
        raise ValueError(f"unknown concurrency policy {concurrency!r}; one of {allowed}")


def get_job(db: Db, job_id: str) -> JobRow:
    """The job ``job_id``. Raises ``NotFoundError`` when it does not exist."""
    with reading(db) as conn:
        row = conn.execute(select(_t).where(_t.c.id == job_id)).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return JobRow.from_mapping(row)


def list_jobs(
    db: Db,
    *,
    owner_uuid: str | None = None,
    project: str | None = None,
    group_name: str | None = None,
    name: str | None = None,
    enabled: bool | None = None,
) -> list[JobRow]:
    """Jobs matching every given filter (exact match), by project, group and name."""
    filters = {
        "owner_uuid": owner_uuid,
        "project": project,
        "group_name": group_name,
        "name": name,
        "enabled": enabled,
    }
    stmt = select(_t).order_by(_t.c.project, _t.c.group_name, _t.c.name, _t.c.id)
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(_t.c[column] == value)
    with reading(db) as conn:
        return [JobRow.from_mapping(row) for row in conn.execute(stmt).mappings()]


def count_jobs_by_owner(db: Db) -> dict[str, int]:
    """Number of jobs per owner uuid (owners with no job are absent)."""
    stmt = select(_t.c.owner_uuid, func.count()).group_by(_t.c.owner_uuid)
    with reading(db) as conn:
        return {owner: count for owner, count in conn.execute(stmt)}


def reassign_jobs(
    db: Db, *, from_owner: str, to_owner: str, job_ids: Collection[str] | None = None
) -> list[str]:
    """Move jobs of ``from_owner`` to ``to_owner`` (all of them, or only ``job_ids``).

    One set-based UPDATE, conditional on ``from_owner`` still owning each job; every moved
    job's ``owner_epoch`` grows by one (which fences the previous owner out). Returns the
    ids actually moved. ``modified_by``/``modified_ms`` are left alone: a takeover is not
    a modification of the job.
    """
    stmt = _t.update().where(_t.c.owner_uuid == from_owner)
    if job_ids is not None:
        stmt = stmt.where(_t.c.id.in_(list(job_ids)))
    stmt = stmt.values(owner_uuid=to_owner, owner_epoch=_t.c.owner_epoch + 1).returning(_t.c.id)
    with writing(db) as conn:
        moved = sorted(conn.execute(stmt).scalars())
    log.info("jobs: %s moved from %s to %s", len(moved), from_owner, to_owner)
    return moved
