"""The fire fence: a member fires a job only if the database agrees it still owns it.

One conditional UPDATE checks, in the database, that the member is the owner at the epoch
it knows, that the job is enabled, and that this fire time was not claimed yet (nor a later
one). Zero rows changed means the member lost the job (taken over or modified elsewhere)
or another process already fired this time: it unschedules the job and moves on. Double
fires are impossible by construction, whatever the timing.
"""

from __future__ import annotations

import logging

from sqlalchemy import or_

from schemas.tables import scheduled_jobs
from workers.store._db import Db, writing
from workers.store.executions import insert_execution

__all__ = ["claim_fire", "fire_job", "set_next_fire_ms"]

log = logging.getLogger(__name__)

_t = scheduled_jobs


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
    stmt = (
        _t.update()
        .where(
            _t.c.id == job_id,
            _t.c.owner_uuid == member_uuid,
            _t.c.owner_epoch == owner_epoch,
            _t.c.enabled.is_(True),
            or_(_t.c.last_fire_ms.is_(None), _t.c.last_fire_ms < fire_ms),
        )
        .values(last_fire_ms=fire_ms)
    )
    with writing(conn) as tx:
        claimed: bool = tx.execute(stmt).rowcount == 1
    if not claimed:
        log.info(
            "job %s: fire %s refused for %s at epoch %s (now %s)",
            job_id,
            fire_ms,
            member_uuid,
            owner_epoch,
            now_ms,
        )
    return claimed


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
