"""The fire fence: a member fires a job only if the database agrees it still owns it.

One conditional UPDATE checks, in the database, that the member is the owner at the epoch
it knows, that the job is live with its schedule and its execution enabled, and that this
fire time was not claimed yet (nor a later one). Zero rows changed means the member lost
the job (taken over or modified elsewhere; disabled or deleted) or another process already
fired this time: it unschedules the job and moves on. Double fires are impossible by
construction, whatever the timing.

The same transaction applies the job's concurrency policy (``workers.store.concurrency``):
the claim returns the policy, the job's active executions on any member are read (not for
``allow``), and the new execution is inserted ``scheduled`` or ``skipped``; with ``replace``
the active ones are marked ``aborted`` ("replaced by <new id>") in that transaction too.
Fires of one job are serialised (only its owner fires it, and the claim's UPDATE locks the
job's row until the commit). A remote run (``qwc run``) goes through
:func:`admit_execution`, which takes the same row lock (``SELECT … FOR UPDATE``; SQLite
has one writer at a time anyway), so a remote run and a fire of one job never both see
"nothing running"; it refuses a job whose executions are disabled (``ConflictError``) or
that was deleted (``NotFoundError``), whoever asks.

A catch-up (misfire policy ``fire_once``) is a fire like any other: :func:`record_fire`
claims its ``fire_ms`` (the newest of the missed times, so every older one is claimed with
it) at the member's epoch, and records the execution with the trigger ``catchup`` and the
missed times (``missed_ms``). A member that lost the job (taken over while it was cut off)
is refused like for any fire: the catch-up runs once, on the owner.

A retry replaces the execution it retries in one transaction, so an active execution never
disappears from view between the two.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, or_, select

from schemas.errors import ConflictError, NotFoundError
from schemas.tables import executions, scheduled_jobs
from workers.store._db import Db, writing
from workers.store.concurrency import ACTIVE_STATUSES, ActiveExecution, decide_admission
from workers.store.executions import insert_execution

__all__ = [
    "Admitted",
    "admit_execution",
    "catchup_reason",
    "claim_fire",
    "fire_job",
    "record_fire",
    "set_next_fire_ms",
]

log = logging.getLogger(__name__)

_t, _e = scheduled_jobs, executions


@dataclass(frozen=True)
class Admitted:
    """A new execution as the job's concurrency policy admitted it: ``status``
    ``scheduled`` (to run) or ``skipped`` (recorded, never run; ``reason`` says why), and
    the executions it replaced (now ``aborted``; policy ``replace``)."""

    execution_id: str
    status: str
    reason: str | None = None
    aborted: tuple[str, ...] = ()


def claim_fire(
    conn: Db,
    *,
    job_id: str,
    member_uuid: str,
    owner_epoch: int,
    fire_ms: int,
    now_ms: int,
) -> bool:
    """Claim fire time ``fire_ms`` (epoch ms) of ``job_id`` for ``member_uuid``.

    True iff exactly one row changed: the member owns the job at ``owner_epoch``, the job is
    live with its schedule and execution enabled, and no fire time >= ``fire_ms`` was
    claimed before. ``now_ms`` is only logged.
    """
    with writing(conn) as tx:
        return _claim(tx, job_id, member_uuid, owner_epoch, fire_ms, now_ms) is not None


def _claim(
    conn: Connection, job_id: str, member_uuid: str, owner_epoch: int, fire_ms: int, now_ms: int
) -> str | None:
    """:func:`claim_fire` in ``conn``'s transaction; the job's concurrency policy when it
    was claimed, else None."""
    stmt = (
        _t.update()
        .where(
            _t.c.id == job_id,
            _t.c.owner_uuid == member_uuid,
            _t.c.owner_epoch == owner_epoch,
            _t.c.enabled.is_(True),  # what the previous release checks: kept = both flags
            _t.c.schedule_enabled.is_(True),
            _t.c.execution_enabled.is_(True),
            _t.c.deleted_ms.is_(None),
            or_(_t.c.last_fire_ms.is_(None), _t.c.last_fire_ms < fire_ms),
        )
        .values(last_fire_ms=fire_ms)
        .returning(_t.c.concurrency)
    )
    policy: str | None = conn.execute(stmt).scalar_one_or_none()
    if policy is None:
        log.info(
            "job %s: fire %s refused for %s at epoch %s (now %s)",
            job_id,
            fire_ms,
            member_uuid,
            owner_epoch,
            now_ms,
        )
    return policy


def record_fire(
    db: Db,
    *,
    job_id: str,
    member_uuid: str,
    owner_epoch: int,
    fire_ms: int,
    now_ms: int,
    execution_id: str | None = None,
    trigger: str = "schedule",
    missed_ms: Sequence[int] = (),
) -> Admitted | None:
    """Claim ``fire_ms`` and record its execution (``trigger`` ``schedule``, or ``catchup``
    with the ``missed_ms`` it stands for; with ``fire_ms`` and ``owner_epoch``) as the job's
    concurrency policy admits it, in one transaction.

    None when the fence refused: the member lost the job, the job was disabled or deleted,
    or that fire time was already claimed. Otherwise the fire time is claimed, whatever the
    policy decided. Times are epoch ms.
    """
    with writing(db) as conn:
        policy = _claim(conn, job_id, member_uuid, owner_epoch, fire_ms, now_ms)
        if policy is None:
            return None
        return _admit(
            conn,
            policy,
            job_id=job_id,
            member_uuid=member_uuid,
            trigger=trigger,
            fire_ms=fire_ms,
            now_ms=now_ms,
            owner_epoch=owner_epoch,
            execution_id=execution_id,
            missed_ms=missed_ms,
        )


def fire_job(
    db: Db,
    *,
    job_id: str,
    member_uuid: str,
    owner_epoch: int,
    fire_ms: int,
    now_ms: int,
    trigger: str = "schedule",
    missed_ms: Sequence[int] = (),
) -> str | None:
    """:func:`record_fire`, answering only the new execution's id (``scheduled``, or
    ``skipped`` by the job's concurrency policy: nothing to dispatch), or None when the
    fence refused."""
    admitted = record_fire(
        db,
        job_id=job_id,
        member_uuid=member_uuid,
        owner_epoch=owner_epoch,
        fire_ms=fire_ms,
        now_ms=now_ms,
        trigger=trigger,
        missed_ms=missed_ms,
    )
    return None if admitted is None else admitted.execution_id


def admit_execution(
    db: Db,
    *,
    job_id: str,
    member_uuid: str,
    trigger: str,
    fire_ms: int,
    now_ms: int,
    execution_id: str | None = None,
) -> Admitted:
    """Record an execution of ``job_id`` not fired by its schedule (a remote run) on
    ``member_uuid``, as the job's concurrency policy admits it; the job's row is locked
    first, as a fire's claim locks it. Raises ``NotFoundError`` for an unknown (or
    deleted) job, ``ConflictError`` when its executions are disabled."""
    with writing(db) as conn:
        lock = (
            select(_t.c.concurrency, _t.c.execution_enabled)
            .where(_t.c.id == job_id, _t.c.deleted_ms.is_(None))
            .with_for_update()
        )
        found = conn.execute(lock).first()
        if found is None:
            raise NotFoundError(f"job {job_id} does not exist")
        policy, execution_enabled = found
        if not execution_enabled:
            raise ConflictError(f"job {job_id}: its executions are disabled")
        return _admit(
            conn,
            policy,
            job_id=job_id,
            member_uuid=member_uuid,
            trigger=trigger,
            fire_ms=fire_ms,
            now_ms=now_ms,
            execution_id=execution_id,
        )


def _admit(
    conn: Connection,
    policy: str,
    *,
    job_id: str,
    member_uuid: str,
    trigger: str,
    fire_ms: int,
    now_ms: int,
    owner_epoch: int | None = None,
    execution_id: str | None = None,
    missed_ms: Sequence[int] = (),
) -> Admitted:
    """Apply ``policy`` to a new execution of ``job_id`` and insert it (caller's
    transaction, with the job's row locked). ``allow`` reads nothing more."""
    new_id = execution_id or str(uuid.uuid4())
    active = [] if policy == "allow" else _active(conn, job_id)
    decision = decide_admission(policy, active, new_id=new_id)
    aborted: tuple[str, ...] = ()
    if decision.abort:
        aborted = _abort(conn, decision.abort, reason=decision.abort_reason, now_ms=now_ms)
    insert_execution(
        conn,
        job_id=job_id,
        member_uuid=member_uuid,
        trigger=trigger,
        fire_ms=fire_ms,
        now_ms=now_ms,
        status=decision.status,
        owner_epoch=owner_epoch,
        execution_id=new_id,
        reason=decision.reason or catchup_reason(missed_ms),
        missed_ms=missed_ms if trigger == "catchup" else None,
    )
    if decision.status == "skipped":
        log.info("job %s: execution %s skipped: %s", job_id, new_id, decision.reason)
    for old in aborted:
        log.info("job %s: execution %s aborted: replaced by %s", job_id, old, new_id)
    return Admitted(new_id, decision.status, decision.reason, aborted)


def catchup_reason(missed_ms: Sequence[int]) -> str | None:
    """The reason a catch-up execution carries: how many times it stands for, from when to
    when (None for an execution that stands for no missed time)."""
    if not missed_ms:
        return None
    first, last = (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
        for ms in (min(missed_ms), max(missed_ms))
    )
    span = first if first == last else f"{first} to {last}"
    return f"catch-up of {len(missed_ms)} missed fire time(s): {span}"


def _active(conn: Connection, job_id: str) -> list[ActiveExecution]:
    """The job's executions that have not ended, on any member (the (job_id, status)
    index: never the job's whole history)."""
    stmt = select(_e.c.id, _e.c.member_uuid, _e.c.status).where(
        _e.c.job_id == job_id, _e.c.status.in_(ACTIVE_STATUSES)
    )
    return [ActiveExecution(*row) for row in conn.execute(stmt)]


def _abort(
    conn: Connection, ids: tuple[str, ...], *, reason: str | None, now_ms: int
) -> tuple[str, ...]:
    """Mark those of ``ids`` still active ``aborted`` (one conditional UPDATE); the ids
    it changed."""
    stmt = (
        _e.update()
        .where(_e.c.id.in_(ids), _e.c.status.in_(ACTIVE_STATUSES))
        .values(status="aborted", ended_ms=now_ms, reason=reason)
        .returning(_e.c.id)
    )
    return tuple(sorted(conn.execute(stmt).scalars()))


def set_next_fire_ms(
    db: Db, *, job_id: str, member_uuid: str, owner_epoch: int, next_fire_ms: int | None
) -> bool:
    """Record the owner's next planned fire time (epoch ms, None = none); fenced like a fire.

    False when ``member_uuid`` no longer owns the job at ``owner_epoch``.
    """
    stmt = (
        _t.update()
        .where(
            _t.c.id == job_id,
            _t.c.owner_uuid == member_uuid,
            _t.c.owner_epoch == owner_epoch,
        )
        .values(next_fire_ms=next_fire_ms)
    )
    with writing(db) as conn:
        changed: bool = conn.execute(stmt).rowcount == 1
    return changed
