"""Scheduled jobs: create, modify, read, and move between owners.

Ownership rule of the product: a job is owned by the last member that modified it. So
``create_job`` and ``update_job`` make the modifying member the owner, and every
modification increments ``owner_epoch`` in the same statement — the epoch is what the fire
fence (``workers.store.fence``) checks, so the previous owner's plan is refused from the
commit on. ``update_job`` without a member (``modified_by=None``: an operator's CLI that is
no member) keeps the owner and still increments the epoch: the owner plans the job anew
with the new settings at its next reload.

What a job runs is its ``executor`` kind with, for ``command``, the argv in ``command`` and,
for the other kinds (``shell``, ``http``, ``python``), the parameters in ``executor_spec``
(validated by ``workers.jobs.executor`` before they get here). ``timeout_s`` (None: none),
``concurrency`` (``allow|forbid|replace``, applied by the fence), ``time_zone`` (None: the
cluster default), ``misfire`` (``skip|fire_once``) and ``misfire_grace_s`` (None: the
scheduler's default) and ``notify`` (the job's webhooks, trigger -> URLs:
``workers.jobs.hooks``) are per job too.

Enabled flags (Rundeck's): ``schedule_enabled`` (fired by its schedule) and
``execution_enabled`` (may run at all: fired, run on demand, retried). The column
``enabled`` is kept equal to their AND by every write here: it is what the release before
0004 reads. A row that release inserted with ``enabled`` false (and the flags at their
default, true) reads as a disabled schedule, and the next write here makes it explicit.

A deleted job keeps its row with ``deleted_ms`` set (``workers.store.job_delete``); every
reader (``workers.store.job_reads``) sees live jobs only, unless asked
(``get_job(include_deleted=True)``).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, RowMapping, and_, case, literal, not_, or_, select
from sqlalchemy.exc import IntegrityError

from schemas.errors import ConflictError, NotFoundError
from schemas.tables import CONCURRENCY_POLICIES, EXECUTOR_KINDS, MISFIRE_POLICIES, scheduled_jobs
from workers.store._db import Db, writing

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MISFIRE",
    "SETTLING_FIELDS",
    "UPDATABLE_FIELDS",
    "JobRow",
    "create_job",
    "job_path",
    "live",
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
        "enabled",  # = schedule_enabled (its meaning before 0004)
        "schedule_enabled",
        "execution_enabled",
        "retry_count",
        "retry_delay_s",
        "next_fire_ms",
        "executor",
        "executor_spec",
        "timeout_s",
        "concurrency",
        "time_zone",
        "misfire",
        "misfire_grace_s",
        "description",
        "notify",
    }
)
# A change of one of these settles the fire times up to the modification (last_fire_ms moves
# up to it): they were not due under the new settings, so a fire_once job does not catch
# them up, and a re-enabled job does not catch up the times it was disabled for.
SETTLING_FIELDS = frozenset({"schedule", "time_zone", "schedule_enabled", "execution_enabled"})
DEFAULT_CONCURRENCY: Final = "forbid"  # a new job, as Rundeck's multipleExecutions: false
DEFAULT_MISFIRE: Final = "skip"

_t = scheduled_jobs


def live() -> Any:
    """The condition "not deleted" on ``scheduled_jobs``."""
    return _t.c.deleted_ms.is_(None)


@dataclass(frozen=True)
class JobRow:
    """One ``scheduled_jobs`` row. ``command`` is the decoded argv (executor ``command``;
    empty for the other kinds, whose parameters are ``executor_spec``); times are epoch ms;
    ``timeout_s`` None means no timeout. ``enabled`` is what the scheduler reads: fired by
    its schedule (``schedule_enabled`` and ``execution_enabled``)."""

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
    schedule_enabled: bool = True
    execution_enabled: bool = True
    time_zone: str | None = None
    misfire: str = DEFAULT_MISFIRE
    misfire_grace_s: float | None = None
    description: str = ""
    deleted_ms: int | None = None
    notify: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    missed_fires: int = 0  # fire times that never ran (misfires), counted at the next claim

    @property
    def path(self) -> str:
        """``project/name`` or ``project/group/name``."""
        return job_path(self.project, self.group_name, self.name)

    @classmethod
    def from_mapping(cls, row: RowMapping) -> JobRow:
        """Build from a row of ``scheduled_jobs`` (all columns); see the module docstring
        for the flags of a row written by the previous release."""
        values = dict(row)
        values["command"] = tuple(values["command"])
        for column in ("retry_delay_s", "timeout_s", "misfire_grace_s"):
            if values[column] is not None:
                values[column] = float(values[column])
        values["notify"] = {t: tuple(u) for t, u in (values.get("notify") or {}).items()}
        execution = bool(values["execution_enabled"])
        schedule = bool(values["schedule_enabled"]) and (bool(values["enabled"]) or not execution)
        values.update(
            schedule_enabled=schedule, execution_enabled=execution, enabled=schedule and execution
        )
        return cls(**values)


def job_path(project: str, group_name: str, name: str) -> str:
    """A job's path as operators name it: ``project/name`` or ``project/group/name``."""
    return "/".join(part for part in (project, group_name, name) if part)


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
    execution_enabled: bool = True,
    time_zone: str | None = None,
    misfire: str = DEFAULT_MISFIRE,
    misfire_grace_s: float | None = None,
    description: str = "",
    notify: Mapping[str, Sequence[str]] | None = None,
) -> JobRow:
    """Insert a job owned by ``modified_by`` at ``owner_epoch`` 1; ``now_ms`` is epoch ms.

    ``group_name`` is ``""`` for an ungrouped job. ``schedule`` is a cron text, or None for a
    job run on demand only. ``command`` is the argv of a ``command`` job (``[]`` for the
    other executors, whose parameters are ``executor_spec``). ``enabled`` is the schedule's
    flag. Raises ``ValueError`` for an unknown executor, concurrency or misfire policy,
    ``ConflictError`` naming the existing job when a live job has that
    (project, group_name, name) or any job that id.
    """
    _check_kinds(executor, concurrency, misfire)
    values: dict[str, Any] = {
        "id": job_id or str(uuid.uuid4()),
        "project": project,
        "group_name": group_name,
        "name": name,
        "command": list(command),
        "schedule": schedule,
        "enabled": enabled and execution_enabled,
        "schedule_enabled": enabled,
        "execution_enabled": execution_enabled,
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
        "time_zone": time_zone,
        "misfire": misfire,
        "misfire_grace_s": misfire_grace_s,
        "description": description,
        "notify": {t: list(u) for t, u in (notify or {}).items()},
    }
    where = job_path(project, group_name, name)
    try:
        with writing(db) as conn:
            _refuse_existing(conn, where, values["id"], (project, group_name, name))
            row = conn.execute(_t.insert().values(values).returning(*_t.c)).mappings().one()
    except IntegrityError as exc:  # created by another process meanwhile
        raise ConflictError(f"job {where} already exists (created meanwhile)") from exc
    log.info("job %s: created by %s", values["id"], modified_by)
    return JobRow.from_mapping(row)


def _refuse_existing(conn: Connection, where: str, job_id: str, path: tuple[str, str, str]) -> None:
    """``ConflictError`` naming the live job at ``path``, or the job (live or deleted) with
    ``job_id``."""
    at_path = _live_id_at(conn, *path)
    if at_path is not None:
        raise ConflictError(f"job {where} (id {at_path}) already exists", existing_id=at_path)
    same_id = conn.execute(select(_t.c.deleted_ms).where(_t.c.id == job_id)).first()
    if same_id is not None:
        state = " (deleted; removed with its last execution by retention)" if same_id[0] else ""
        raise ConflictError(f"a job with id {job_id} already exists{state}", existing_id=job_id)


def _live_id_at(conn: Connection, project: str, group_name: str, name: str) -> str | None:
    stmt = select(_t.c.id).where(
        _t.c.project == project, _t.c.group_name == group_name, _t.c.name == name, live()
    )
    found: str | None = conn.execute(stmt).scalar_one_or_none()
    return found


def update_job(
    db: Db, job_id: str, *, modified_by: str | None, now_ms: int, **changes: Any
) -> JobRow:
    """Modify a live job; ``modified_by`` becomes its owner (None: the owner is kept), and
    ``owner_epoch`` grows by one either way.

    ``changes`` are fields of ``UPDATABLE_FIELDS`` (``enabled`` means ``schedule_enabled``).
    A change of one of ``SETTLING_FIELDS`` moves ``last_fire_ms`` up to ``now_ms``. One
    UPDATE statement, so owner, epoch and fields change atomically. Raises ``ValueError``
    for an unknown field, ``NotFoundError`` when the job does not exist (or was deleted),
    ``ConflictError`` naming the job that has the new (project, group_name, name).
    """
    unknown = sorted(set(changes) - UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(f"cannot update job field(s) {', '.join(unknown)}")
    if "enabled" in changes:
        changes["schedule_enabled"] = changes.pop("enabled")
    _check_kinds(
        changes.get("executor", "command"),
        changes.get("concurrency", "allow"),
        changes.get("misfire", DEFAULT_MISFIRE),
    )
    values = _update_values(changes, modified_by, now_ms)
    stmt = _t.update().where(_t.c.id == job_id, live()).values(values).returning(*_t.c)
    try:
        with writing(db) as conn:
            _refuse_renaming_onto(conn, job_id, changes)
            row = conn.execute(stmt).mappings().one_or_none()
    except IntegrityError as exc:
        raise ConflictError(f"job {job_id}: another job has that project/group/name") from exc
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    who = modified_by or f"{row['owner_uuid']} (kept)"
    log.info("job %s: modified, owner %s, epoch %s", job_id, who, row["owner_epoch"])
    return JobRow.from_mapping(row)


def _update_values(changes: dict[str, Any], modified_by: str | None, now_ms: int) -> dict[str, Any]:
    """The SET clause of :func:`update_job`: the changes, the flags kept consistent, the
    owner and epoch, and the settled fire times."""
    values = dict(changes)
    if "command" in values:
        values["command"] = list(values["command"])
    if "executor_spec" in values:
        values["executor_spec"] = dict(values["executor_spec"])
    if "notify" in values:
        values["notify"] = {t: list(u) for t, u in values["notify"].items()}
    execution = (
        literal(bool(values.pop("execution_enabled")))
        if "execution_enabled" in values
        else _t.c.execution_enabled
    )
    schedule = (
        literal(bool(values.pop("schedule_enabled")))
        if "schedule_enabled" in values
        else and_(_t.c.schedule_enabled, or_(_t.c.enabled, not_(_t.c.execution_enabled)))
    )
    values.update(schedule_enabled=schedule, execution_enabled=execution)
    values["enabled"] = and_(schedule, execution)
    if SETTLING_FIELDS & set(changes):
        values["last_fire_ms"] = case(
            (or_(_t.c.last_fire_ms.is_(None), _t.c.last_fire_ms < now_ms), now_ms),
            else_=_t.c.last_fire_ms,
        )
    if modified_by is not None:
        values.update(owner_uuid=modified_by, modified_by=modified_by)
    values.update(owner_epoch=_t.c.owner_epoch + 1, modified_ms=now_ms)
    return values


def _refuse_renaming_onto(conn: Connection, job_id: str, changes: Mapping[str, Any]) -> None:
    """``ConflictError`` naming the live job that already has the path ``changes`` give."""
    if not {"project", "group_name", "name"} & set(changes):
        return
    current = conn.execute(
        select(_t.c.project, _t.c.group_name, _t.c.name).where(_t.c.id == job_id, live())
    ).first()
    if current is None:
        return  # the UPDATE finds nothing: NotFoundError
    keys = ("project", "group_name", "name")
    path = tuple(changes.get(k, v) for k, v in zip(keys, current, strict=True))
    other = _live_id_at(conn, *path)
    if other is not None and other != job_id:
        where = job_path(*path)
        raise ConflictError(f"job {where} (id {other}) already exists", existing_id=other)


def _check_kinds(executor: str, concurrency: str, misfire: str) -> None:
    """``ValueError`` for an executor kind, concurrency or misfire policy the table refuses."""
    for what, value, allowed in (
        ("executor", executor, EXECUTOR_KINDS),
        ("concurrency policy", concurrency, CONCURRENCY_POLICIES),
        ("misfire policy", misfire, MISFIRE_POLICIES),
    ):
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; one of {', '.join(allowed)}")


def reassign_jobs(
    db: Db, *, from_owner: str, to_owner: str, job_ids: Collection[str] | None = None
) -> list[str]:
    """Move live jobs of ``from_owner`` to ``to_owner`` (all of them, or only ``job_ids``).

    One set-based UPDATE, conditional on ``from_owner`` still owning each job; every moved
    job's ``owner_epoch`` grows by one (which fences the previous owner out). Returns the
    ids actually moved. ``modified_by``/``modified_ms`` are left alone: a takeover is not
    a modification of the job.
    """
    stmt = _t.update().where(_t.c.owner_uuid == from_owner, live())
    if job_ids is not None:
        stmt = stmt.where(_t.c.id.in_(list(job_ids)))
    stmt = stmt.values(owner_uuid=to_owner, owner_epoch=_t.c.owner_epoch + 1).returning(_t.c.id)
    with writing(db) as conn:
        moved = sorted(conn.execute(stmt).scalars())
    log.info("jobs: %s moved from %s to %s", len(moved), from_owner, to_owner)
    return moved
