"""Executions of jobs: insert, read, and conditional status changes.

Status changes are conditional UPDATEs (``... WHERE status IN (...)``), so two processes
deciding about the same execution cannot both win: the one that changed zero rows lost.
A final status may come with a ``reason`` in words (why it was skipped, aborted, replaced,
timed out, marked incomplete); ``output`` is what the execution printed, bounded by its
member (head and tail, ``workers.node.executors.OutputCollector``). A ``catchup``
execution carries ``missed_ms``, the fire times it stands for.

Retries (``insert_executions``: a failed run's next attempt, a recovery's) are inserted only
for a job that is live and whose executions are enabled; the job rows are locked first
(:func:`lock_jobs`), so a deletion or a "disable execution" committed meanwhile is seen (it
then aborts what was inserted before it). A transaction that changes executions and then
inserts retries locks the jobs before the executions, as a fire does (its claim locks the
job, then its ``replace`` policy may abort executions): one lock order, no deadlock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, RowMapping, select

from schemas.errors import NotFoundError
from schemas.tables import (
    EXECUTION_STATUSES,
    EXECUTION_TRIGGERS,
    FINAL_EXECUTION_STATUSES,
    executions,
    scheduled_jobs,
)
from workers.store._db import Db, by_ids_only, reading, writing

__all__ = [
    "FINAL_STATUSES",
    "ExecutionRow",
    "NewExecution",
    "abort_execution",
    "finish_execution",
    "get_execution",
    "insert_checked",
    "insert_execution",
    "insert_executions",
    "list_executions",
    "list_unqueued",
    "lock_jobs",
    "mark_incomplete",
    "mark_queued",
    "mark_queued_at_fire",
    "move_scheduled_executions",
    "start_execution",
    "unmark_queued_at_fire",
]

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset(FINAL_EXECUTION_STATUSES)

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
    output: str | None
    rq_job_id: str | None
    queued_ms: int | None
    reason: str | None
    missed_ms: tuple[int, ...] | None = None

    @property
    def first_id(self) -> str:
        """The id of the first execution of this one's retry chain."""
        return self.retry_of or self.id

    @classmethod
    def from_mapping(cls, row: RowMapping) -> ExecutionRow:
        """Build from a row of ``executions`` (all columns). A row a member of the previous
        release finished has its output in ``output_tail`` only: that is its output."""
        values = dict(row)
        legacy = values.pop("output_tail", None)
        if values["output"] is None:
            values["output"] = legacy
        if values.get("missed_ms") is not None:
            values["missed_ms"] = tuple(int(ms) for ms in values["missed_ms"])
        return cls(**values)


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
    reason: str | None = None,
    missed_ms: Sequence[int] | None = None,
) -> str:
    """Insert an execution and return its id; ``fire_ms``/``now_ms`` are epoch ms.

    ``retry_of`` is the id of the FIRST execution of a retry chain; ``missed_ms`` the fire
    times a ``catchup`` execution stands for. An execution inserted in
    a final status (``skipped``) ends at ``now_ms``. Raises ``ValueError`` for an unknown
    status or trigger, ``sqlalchemy.exc.IntegrityError`` for an unknown job.
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
        "reason": reason,
        "ended_ms": now_ms if status in FINAL_STATUSES else None,
        "missed_ms": None if missed_ms is None else list(missed_ms),
    }
    with writing(db) as conn:
        conn.execute(_t.insert().values(values))
    log.debug("execution %s: %s for job %s on %s", execution_id, trigger, job_id, member_uuid)
    return execution_id


@dataclass(frozen=True)
class NewExecution:
    """An execution to insert, not to start before ``fire_ms`` (epoch ms); e.g. a retry:
    ``attempt`` + 1, ``retry_of`` the first execution of the chain. ``status`` is
    ``scheduled``, or ``skipped`` (a final status: it ends when inserted) with a ``reason``;
    ``missed_ms``: the fire times a ``catchup`` execution stands for."""

    id: str
    job_id: str
    member_uuid: str
    fire_ms: int
    attempt: int = 1
    retry_of: str | None = None
    trigger: str = "retry"
    owner_epoch: int | None = None  # the epoch a fire was claimed at (trigger schedule)
    status: str = "scheduled"
    reason: str | None = None
    missed_ms: tuple[int, ...] | None = None


def insert_executions(db: Db, new: Sequence[NewExecution], *, now_ms: int) -> list[str]:
    """Insert ``new`` (created at ``now_ms``) in one statement, but those of jobs deleted or
    whose executions are disabled (their job rows locked first: see the module docstring).
    Returns the ids inserted."""
    if not new:
        return []
    with writing(db) as conn:
        runnable = lock_jobs(conn, {n.job_id for n in new})
        kept = [n for n in new if n.job_id in runnable]
        for n in new:
            if n.job_id not in runnable:
                log.info("execution %s: not inserted: job %s deleted or disabled", n.id, n.job_id)
        insert_checked(conn, kept, now_ms=now_ms)
    return [n.id for n in kept]


def insert_checked(conn: Connection, new: Sequence[NewExecution], *, now_ms: int) -> None:
    """Insert ``new`` (created at ``now_ms``) in one statement, in the caller's transaction,
    whose jobs the caller has locked and found runnable already (a fire's fenced claim, an
    admission's ``SELECT … FOR UPDATE``)."""
    if new:
        conn.execute(_t.insert(), _new_rows(new, now_ms))


def lock_jobs(conn: Connection, job_ids: Collection[str]) -> set[str]:
    """Lock the rows of ``job_ids`` (``FOR UPDATE``, until the caller's transaction ends;
    SQLite has one writer anyway) and return those that are live with their executions
    enabled: the jobs that may get a new execution."""
    if not job_ids:
        return set()
    j = scheduled_jobs
    stmt = (
        select(j.c.id)
        .where(j.c.id.in_(sorted(job_ids)), j.c.deleted_ms.is_(None), j.c.execution_enabled)
        .with_for_update()
    )
    return set(conn.execute(stmt).scalars())


def _new_rows(new: Sequence[NewExecution], now_ms: int) -> list[dict[str, object]]:
    return [
        {
            "id": n.id,
            "job_id": n.job_id,
            "member_uuid": n.member_uuid,
            "status": n.status,
            "reason": n.reason,
            "ended_ms": now_ms if n.status in FINAL_STATUSES else None,
            "attempt": n.attempt,
            "retry_of": n.retry_of,
            "trigger": n.trigger,
            "fire_ms": n.fire_ms,
            "owner_epoch": n.owner_epoch,
            "created_ms": now_ms,
            "rq_job_id": None,
            "missed_ms": None if n.missed_ms is None else list(n.missed_ms),
        }
        for n in new
    ]


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


def list_unqueued(db: Db, member_uuid: str) -> list[ExecutionRow]:
    """``member_uuid``'s ``scheduled`` executions it has not put on its RQ queue yet, by
    ``fire_ms`` (due or not)."""
    stmt = (
        select(_t)
        .where(_t.c.member_uuid == member_uuid, _t.c.status == "scheduled")
        .where(_t.c.queued_ms.is_(None))
        .order_by(_t.c.fire_ms, _t.c.id)
    )
    with reading(db) as conn:
        return [ExecutionRow.from_mapping(row) for row in conn.execute(stmt).mappings()]


def list_queued_before(db: Db, member_uuid: str, queued_before_ms: int) -> list[ExecutionRow]:
    """``member_uuid``'s executions still ``scheduled`` that it put on its RQ queue before
    ``queued_before_ms``: waiting their turn, or lost from the queue (see
    :func:`unmark_queued`)."""
    stmt = (
        select(_t)
        .where(_t.c.member_uuid == member_uuid, _t.c.status == "scheduled")
        .where(_t.c.queued_ms < queued_before_ms)
        .order_by(_t.c.queued_ms, _t.c.id)
    )
    with reading(db) as conn:
        return [ExecutionRow.from_mapping(row) for row in conn.execute(stmt).mappings()]


def unmark_queued(db: Db, execution_ids: Collection[str], *, member_uuid: str) -> int:
    """Forget that ``member_uuid`` enqueued these still-``scheduled`` executions, so its next
    dispatch enqueues them again (their RQ jobs were lost, e.g. with writes a Redis failover
    dropped); returns how many rows changed. Safe against a late start: the runner only
    starts an execution that is still ``scheduled`` on this member."""
    return _set_queued_ms(db, execution_ids, member_uuid, queued=True, value=None)


def mark_queued(db: Db, execution_ids: Collection[str], *, member_uuid: str, now_ms: int) -> int:
    """Record that ``member_uuid`` enqueued these executions (still ``scheduled`` and its own);
    returns how many rows changed."""
    return _set_queued_ms(db, execution_ids, member_uuid, queued=False, value=now_ms)


def mark_queued_at_fire(db: Db, execution_ids: Collection[str], *, member_uuid: str) -> int:
    """Record that ``member_uuid`` will enqueue these executions (still ``scheduled``, its
    own, not queued yet) at their fire time: ``queued_ms`` = ``fire_ms``, written ahead, so
    that nothing is written when they are due. Returns how many rows changed."""
    return _set_queued_ms(db, execution_ids, member_uuid, queued=False, value=_t.c.fire_ms)


def unmark_queued_at_fire(db: Db, member_uuid: str) -> int:
    """Forget :func:`mark_queued_at_fire` of ``member_uuid``'s ``scheduled`` executions
    (``queued_ms`` = ``fire_ms``): a new run of the member does not know which of them its
    previous run enqueued; its next dispatch enqueues them (again: harmless, the start is
    fenced). Returns how many rows changed."""
    stmt = (
        _t.update()
        .where(_t.c.member_uuid == member_uuid, _t.c.status == "scheduled")
        .where(_t.c.queued_ms == _t.c.fire_ms)
        .values(queued_ms=None)
    )
    with writing(db) as conn:
        count: int = conn.execute(stmt).rowcount
    return count


def _set_queued_ms(
    db: Db,
    execution_ids: Collection[str],
    member_uuid: str,
    *,
    queued: bool,
    value: int | ColumnElement[int] | None,
) -> int:
    """Set ``queued_ms`` of ``member_uuid``'s still-``scheduled`` executions among
    ``execution_ids`` that are (``queued``) or are not yet queued; returns the rows changed."""
    if not execution_ids:
        return 0
    was = _t.c.queued_ms.is_not(None) if queued else _t.c.queued_ms.is_(None)
    stmt = (
        _t.update()
        .where(_t.c.id.in_(list(execution_ids)))
        .where(by_ids_only(_t.c.member_uuid) == member_uuid)
        .where(by_ids_only(_t.c.status) == "scheduled", was)
        .values(queued_ms=value)
    )
    with writing(db) as conn:
        count: int = conn.execute(stmt).rowcount
    return count


def start_execution(
    db: Db,
    execution_id: str,
    *,
    now_ms: int,
    member_uuid: str | None = None,
    rq_job_id: str | None = None,
) -> bool:
    """``scheduled`` -> ``running`` at ``now_ms``, only on ``member_uuid`` when given (the
    fence of a start: an execution moved to another member does not start here). False
    when it was not scheduled (here) any more: aborted, or moved on by another process."""
    values: dict[str, object] = {"status": "running", "started_ms": now_ms}
    if rq_job_id is not None:
        values["rq_job_id"] = rq_job_id
    stmt = _t.update().where(_t.c.id == execution_id, _t.c.status == "scheduled")
    if member_uuid is not None:
        stmt = stmt.where(_t.c.member_uuid == member_uuid)
    with writing(db) as conn:
        return conn.execute(stmt.values(values)).rowcount == 1


def finish_execution(
    db: Db,
    execution_id: str,
    *,
    status: str,
    now_ms: int,
    exit_code: int | None = None,
    output: str | None = None,
    retry: NewExecution | None = None,
    reason: str | None = None,
) -> bool:
    """``scheduled``/``running`` -> a final ``status`` at ``now_ms``, with what it printed
    (``output``) and why (``reason``, e.g. "timed out after 5 s"); in the same transaction,
    insert ``retry`` when the change happened.

    False when the execution had already ended (e.g. it was marked ``incomplete`` by a
    recovery, aborted, or replaced): then no retry is inserted. Nor is it when the job was
    deleted or its executions disabled meanwhile (its row is locked first: see the module
    docstring). Raises ``ValueError`` when ``status`` is not final.
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final execution status")
    values = {
        "status": status,
        "ended_ms": now_ms,
        "exit_code": exit_code,
        "output": output,
        "reason": reason,
    }
    stmt = (
        _t.update()
        .where(_t.c.id == execution_id, _t.c.status.in_(["scheduled", "running"]))
        .values(values)
    )
    with writing(db) as conn:
        if retry is not None:
            lock_jobs(conn, {retry.job_id})  # the job before the execution, as a fire
        changed: bool = conn.execute(stmt).rowcount == 1
        if changed and retry is not None:
            insert_executions(conn, [retry], now_ms=now_ms)
    return changed


def abort_execution(
    db: Db, execution_id: str, *, now_ms: int, reason: str | None = None
) -> ExecutionRow | None:
    """Mark a ``scheduled`` or ``running`` execution ``aborted`` at ``now_ms``, because of
    ``reason`` (words).

    Returns the row as it was just before (its status says whether it had started, its
    member where it runs), or None when it had already ended. Raises ``NotFoundError``
    for an unknown id.
    """
    with writing(db) as conn:
        for _ in range(3):  # the status may change between the read and the update
            before = get_execution(conn, execution_id)
            if before.status in FINAL_STATUSES:
                return None
            stmt = (
                _t.update()
                .where(_t.c.id == execution_id, _t.c.status == before.status)
                .values(status="aborted", ended_ms=now_ms, reason=reason)
            )
            if conn.execute(stmt).rowcount == 1:
                return before
    return None


def mark_incomplete(
    db: Db,
    *,
    member_uuid: str,
    now_ms: int,
    execution_ids: Collection[str] | None = None,
    reason: str | None = None,
) -> list[str]:
    """Mark ``member_uuid``'s running executions ``incomplete`` (all, or only the given ids),
    because of ``reason`` (words).

    One set-based UPDATE conditional on ``status = 'running'``; returns the ids it changed,
    so a second call (or a racing worker) gets only what it changed itself.
    """
    stmt = _t.update().where(_t.c.member_uuid == member_uuid, _t.c.status == "running")
    if execution_ids is not None:
        stmt = stmt.where(_t.c.id.in_(list(execution_ids)))
    values = {"status": "incomplete", "ended_ms": now_ms, "reason": reason}
    stmt = stmt.values(values).returning(_t.c.id)
    with writing(db) as conn:
        marked = sorted(conn.execute(stmt).scalars())
    log.info("member %s: %s running execution(s) marked incomplete", member_uuid, len(marked))
    return marked


def move_scheduled_executions(
    db: Db, *, from_member: str, to_member: str, job_ids: Collection[str] | None = None
) -> list[str]:
    """Move ``from_member``'s not yet started executions (of ``job_ids``, or all) to
    ``to_member``, to be enqueued there; one set-based UPDATE. Returns the ids moved."""
    stmt = _t.update().where(_t.c.member_uuid == from_member, _t.c.status == "scheduled")
    if job_ids is not None:
        stmt = stmt.where(_t.c.job_id.in_(list(job_ids)))
    stmt = stmt.values(member_uuid=to_member, queued_ms=None).returning(_t.c.id)
    with writing(db) as conn:
        return sorted(conn.execute(stmt).scalars())
