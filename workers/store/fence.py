"""The fire fence: a member fires a job only if the database agrees it still owns it.

One conditional UPDATE checks, in the database, that the member is the owner at the epoch
it knows, that the job is enabled, and that this fire time was not claimed yet (nor a later
one). Zero rows changed means the member lost the job (taken over or modified elsewhere)
or another process already fired this time: it unschedules the job and moves on. Double
fires are impossible by construction, whatever the timing.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Update, case, or_
from sqlalchemy.sql.dml import UpdateBase

from schemas.tables import scheduled_jobs
from workers.store._db import Db, writing
from workers.store.executions import NewExecution, insert_execution, insert_executions

__all__ = ["CLAIM_CHUNK", "FireClaim", "claim_fire", "claim_fires", "fire_job", "set_next_fire_ms"]

log = logging.getLogger(__name__)

_t = scheduled_jobs

CLAIM_CHUNK = 500  # jobs per fenced UPDATE of claim_fires (bound parameters stay few)


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
    enabled, and no fire time >= ``fire_ms`` was claimed before. ``now_ms`` is only logged.
    """
    stmt = _fence(job_id, member_uuid, owner_epoch, fire_ms).values(last_fire_ms=fire_ms)
    with writing(conn) as tx:
        claimed: bool = tx.execute(stmt).rowcount == 1
    if not claimed:
        _log_refused(job_id, fire_ms, member_uuid, owner_epoch, now_ms)
    return claimed


def _fence(job_id: str, member_uuid: str, owner_epoch: int, fire_ms: int) -> Update:
    """The fence: the job's UPDATE, only while ``member_uuid`` owns it at ``owner_epoch``,
    it is enabled, and no fire time >= ``fire_ms`` was claimed yet."""
    return _t.update().where(_t.c.id == job_id, *_fenced(member_uuid, owner_epoch, fire_ms))


def _fenced(
    member_uuid: str, owner_epoch: int | ColumnElement[int], fire_ms: int | ColumnElement[int]
) -> list[ColumnElement[bool]]:
    """The fence's conditions on a job row (values, or per-row expressions of them)."""
    return [
        _t.c.owner_uuid == member_uuid,
        _t.c.owner_epoch == owner_epoch,
        _t.c.enabled.is_(True),
        or_(_t.c.last_fire_ms.is_(None), _t.c.last_fire_ms < fire_ms),
    ]


def _log_refused(job_id: str, fire_ms: int, member_uuid: str, epoch: int, now_ms: int) -> None:
    log.info(
        "job %s: fire %s refused for %s at epoch %s (now %s)",
        job_id,
        fire_ms,
        member_uuid,
        epoch,
        now_ms,
    )


@dataclass(frozen=True)
class FireClaim:
    """One fire time to claim: ``job_id`` at ``fire_ms`` (epoch ms), owned at
    ``owner_epoch``; ``next_fire_ms`` is recorded as the job's next planned time."""

    job_id: str
    owner_epoch: int
    fire_ms: int
    next_fire_ms: int | None


def claim_fires(
    db: Db, fires: Sequence[FireClaim], *, member_uuid: str, now_ms: int
) -> dict[FireClaim, str]:
    """Claim ``fires`` through the fence and insert an execution for each one claimed, all
    in one transaction: ONE fenced UPDATE for the batch (each job's epoch, fire time and
    next planned time picked by its id; several fires of one job go in successive
    statements, in time order; at most :data:`CLAIM_CHUNK` jobs per statement) returning
    the jobs it claimed, then one INSERT of every execution. Returns the execution id of
    each fire claimed; a fire missing from it was refused (the job was lost, or that time
    was claimed already)."""
    claimed: dict[FireClaim, str] = {}
    with writing(db) as conn:
        for batch in _rounds(fires):
            stmt = _claim_statement(batch, member_uuid)
            won = set(conn.execute(stmt).scalars())
            for fire in batch:
                if fire.job_id in won:
                    claimed[fire] = str(uuid.uuid4())
                else:
                    _log_refused(fire.job_id, fire.fire_ms, member_uuid, fire.owner_epoch, now_ms)
        new = [
            NewExecution(
                id=eid,
                job_id=f.job_id,
                member_uuid=member_uuid,
                fire_ms=f.fire_ms,
                trigger="schedule",
                owner_epoch=f.owner_epoch,
            )
            for f, eid in claimed.items()
        ]
        insert_executions(conn, new, now_ms=now_ms)
    return claimed


def _rounds(fires: Sequence[FireClaim]) -> list[list[FireClaim]]:
    """``fires`` in batches of distinct jobs (at most CLAIM_CHUNK), a job's earlier fires
    in earlier batches."""
    by_turn: dict[int, list[FireClaim]] = {}
    turns: Counter[str] = Counter()
    for fire in sorted(fires, key=lambda f: f.fire_ms):
        by_turn.setdefault(turns[fire.job_id], []).append(fire)
        turns[fire.job_id] += 1
    return [
        same[i : i + CLAIM_CHUNK]
        for _, same in sorted(by_turn.items())
        for i in range(0, len(same), CLAIM_CHUNK)
    ]


def _claim_statement(batch: Sequence[FireClaim], member_uuid: str) -> UpdateBase:
    """One fenced UPDATE for ``batch`` (distinct jobs), returning the ids it claimed."""

    def by_id(values: dict[str, int | None]) -> ColumnElement[int]:
        return case(values, value=_t.c.id)

    fire = by_id({f.job_id: f.fire_ms for f in batch})
    epoch = by_id({f.job_id: f.owner_epoch for f in batch})
    return (
        _t.update()
        .where(_t.c.id.in_([f.job_id for f in batch]), *_fenced(member_uuid, epoch, fire))
        .values(last_fire_ms=fire, next_fire_ms=by_id({f.job_id: f.next_fire_ms for f in batch}))
        .returning(_t.c.id)
    )


def fire_job(
    db: Db, *, job_id: str, member_uuid: str, owner_epoch: int, fire_ms: int, now_ms: int
) -> str | None:
    """Claim ``fire_ms`` and insert its execution, in one transaction.

    Returns the new execution's id (status ``scheduled``, trigger ``schedule``, with
    ``fire_ms`` and ``owner_epoch``), or None when the fence refused: the member lost the job
    or that fire time was already claimed.
    """
    with writing(db) as conn:
        if not claim_fire(
            conn,
            job_id=job_id,
            member_uuid=member_uuid,
            owner_epoch=owner_epoch,
            fire_ms=fire_ms,
            now_ms=now_ms,
        ):
            return None
        return insert_execution(
            conn,
            job_id=job_id,
            member_uuid=member_uuid,
            trigger="schedule",
            fire_ms=fire_ms,
            now_ms=now_ms,
            owner_epoch=owner_epoch,
        )


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
