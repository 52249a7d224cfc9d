"""Executions of jobs: insert, read, and conditional status changes.

Status changes are conditional UPDATEs (``... WHERE status IN (...)``), so two processes
deciding about the same execution cannot both win: the one that changed zero rows lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import RowMapping, select

from schemas.errors import NotFoundError
from schemas.tables import EXECUTION_STATUSES, EXECUTION_TRIGGERS, executions
from workers.store._db import Db, reading, writing

__all__ = [
    "FINAL_STATUSES",
    "ExecutionRow",
    "finish_execution",
    "get_execution",
    "insert_execution",
    "list_executions",
    "mark_incomplete",
    "move_scheduled_executions",
    "start_execution",
]

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"succeeded", "failed", "aborted", "incomplete"})

_t = executions


@dataclass(frozen=True)
class ExecutionRow:
    """One ``executions`` row; times are epoch ms."""

    id: str
    job_id: str
    member_uuid: str
    status: str
    attempt: int
    retry_of: str | None
    trigger: str
    fire_ms: int
    owner_epoch: int | None
    created_ms: int
    started_ms: int | None
    ended_ms: int | None
    exit_code: int | None
    output_tail: str | None
    rq_job_id: str | None

    @classmethod
    def from_mapping(cls, row: RowMapping) -> ExecutionRow:
        """Build from a row of ``executions`` (all columns)."""
        return cls(**row)


def insert_execution(
    db: Db,
    *,
    job_id: str,
    member_uuid: str,
    trigger: str,
    fire_ms: int,
    now_ms: int,
    status: str = "scheduled",
    attempt: int = 1,
    retry_of: str | None = None,
    owner_epoch: int | None = None,
    rq_job_id: str | None = None,
    execution_id: str | None = None,
) -> str:
    """Insert an execution and return its id; ``fire_ms``/``now_ms`` are epoch ms.

    ``retry_of`` is the id of the FIRST execution of a retry chain. Raises ``ValueError``
    for an unknown status or trigger, ``sqlalchemy.exc.IntegrityError`` for an unknown job.
    """
    if status not in EXECUTION_STATUSES:
        raise ValueError(f"unknown execution status {status!r}")
    if trigger not in EXECUTION_TRIGGERS:
        raise ValueError(f"unknown execution trigger {trigger!r}")
    execution_id = execution_id or str(uuid.uuid4())
    values = {
        "id": execution_id,
        "job_id": job_id,
        "member_uuid": member_uuid,
        "status": status,
        "attempt": attempt,
        "retry_of": retry_of,
        "trigger": trigger,
        "fire_ms": fire_ms,
        "owner_epoch": owner_epoch,
        "created_ms": now_ms,
        "rq_job_id": rq_job_id,
    }
    with writing(db) as conn:
        conn.execute(_t.insert().values(values))
    log.debug("execution %s: %s for job %s on %s", execution_id, trigger, job_id, member_uuid)
    return execution_id


def get_execution(db: Db, execution_id: str) -> ExecutionRow:
    """The execution ``execution_id``. Raises ``NotFoundError`` when it does not exist."""
    with reading(db) as conn:
        row = conn.execute(select(_t).where(_t.c.id == execution_id)).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"execution {execution_id} does not exist")
    return ExecutionRow.from_mapping(row)


def list_executions(
    db: Db,
    *,
    member_uuid: str | None = None,
    job_id: str | None = None,
    statuses: Collection[str] | None = None,
    retry_of: str | None = None,
    limit: int | None = None,
) -> list[ExecutionRow]:
    """Executions matching every given filter, newest first (by ``created_ms``)."""
    stmt = select(_t).order_by(_t.c.created_ms.desc(), _t.c.id)
    if member_uuid is not None:
        stmt = stmt.where(_t.c.member_uuid == member_uuid)
    if job_id is not None:
        stmt = stmt.where(_t.c.job_id == job_id)
    if statuses is not None:
        stmt = stmt.where(_t.c.status.in_(list(statuses)))
    if retry_of is not None:
        stmt = stmt.where(_t.c.retry_of == retry_of)
    if limit is not None:
        stmt = stmt.limit(limit)
    with reading(db) as conn:
        return [ExecutionRow.from_mapping(row) for row in conn.execute(stmt).mappings()]


def start_execution(
    db: Db, execution_id: str, *, now_ms: int, rq_job_id: str | None = None
) -> bool:
    """``scheduled`` -> ``running`` at ``now_ms``. False when it was not scheduled any more
    (aborted, or moved on by another process)."""
    values: dict[str, object] = {"status": "running", "started_ms": now_ms}
    if rq_job_id is not None:
        values["rq_job_id"] = rq_job_id
    stmt = _t.update().where(_t.c.id == execution_id, _t.c.status == "scheduled").values(values)
    with writing(db) as conn:
        return conn.execute(stmt).rowcount == 1


def finish_execution(
    db: Db,
    execution_id: str,
    *,
    status: str,
    now_ms: int,
    exit_code: int | None = None,
    output_tail: str | None = None,
) -> bool:
    """``scheduled``/``running`` -> a final ``status`` at ``now_ms``.

    False when the execution had already ended (e.g. it was marked ``incomplete`` by a
    recovery, or aborted). Raises ``ValueError`` when ``status`` is not final.
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final execution status")
    stmt = (
        _t.update()
        .where(_t.c.id == execution_id, _t.c.status.in_(["scheduled", "running"]))
        .values(status=status, ended_ms=now_ms, exit_code=exit_code, output_tail=output_tail)
    )
    with writing(db) as conn:
        return conn.execute(stmt).rowcount == 1


def mark_incomplete(
    db: Db, *, member_uuid: str, now_ms: int, execution_ids: Collection[str] | None = None
) -> list[str]:
    """Mark ``member_uuid``'s running executions ``incomplete`` (all, or only the given ids).

    One set-based UPDATE conditional on ``status = 'running'``; returns the ids it changed,
    so a second call (or a racing worker) gets only what it changed itself.
    """
    stmt = _t.update().where(_t.c.member_uuid == member_uuid, _t.c.status == "running")
    if execution_ids is not None:
        stmt = stmt.where(_t.c.id.in_(list(execution_ids)))
    stmt = stmt.values(status="incomplete", ended_ms=now_ms).returning(_t.c.id)
    with writing(db) as conn:
        marked = sorted(conn.execute(stmt).scalars())
    log.info("member %s: %s running execution(s) marked incomplete", member_uuid, len(marked))
    return marked


def move_scheduled_executions(
    db: Db, *, from_member: str, to_member: str, job_ids: Collection[str] | None = None
) -> list[str]:
    """Move ``from_member``'s not yet started executions (of ``job_ids``, or all) to
    ``to_member``; one set-based UPDATE. Returns the ids moved."""
    stmt = _t.update().where(_t.c.member_uuid == from_member, _t.c.status == "scheduled")
    if job_ids is not None:
        stmt = stmt.where(_t.c.job_id.in_(list(job_ids)))
    stmt = stmt.values(member_uuid=to_member).returning(_t.c.id)
    with writing(db) as conn:
        return sorted(conn.execute(stmt).scalars())
