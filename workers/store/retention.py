"""Execution retention: executions that ended long ago are deleted, a small batch at a time.

``qwcontrol.executions.retention.days`` (default 30, as Rundeck's execution cleaner) says
how long an execution is kept after it ended; 0 keeps them forever. :func:`expired_before_ms`
is the cut-off (pure); :func:`delete_expired_executions` deletes at most ``limit`` rows that
ended before it, oldest first, in one short transaction of its own (one ``DELETE … WHERE id
IN (SELECT … ORDER BY ended_ms LIMIT n)`` on the ``ended_ms`` index), so no write lock is
held for long — the caller loops (``workers.recovery.retention``).

What is never deleted: an execution that has not ended (``scheduled``, ``running``: its
``ended_ms`` is NULL, and the status is checked too). Nothing else depends on an old
execution: the fire fence reads ``scheduled_jobs.last_fire_ms`` only, a retry refers to
the first execution of its chain by id only (``retry_of``, no foreign key), and so do
commands. Times are epoch ms.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select

from schemas.tables import FINAL_EXECUTION_STATUSES, executions
from workers.store._db import Db, writing

__all__ = ["DAY_MS", "RETENTION_BATCH_ROWS", "delete_expired_executions", "expired_before_ms"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
RETENTION_BATCH_ROWS = 500  # per statement: a few ms of write lock

_e = executions


def expired_before_ms(now_ms: int, retention_days: float) -> int | None:
    """Executions that ended before this time (epoch ms) are past ``retention_days`` at
    ``now_ms``; None when ``retention_days`` is 0 (keep forever)."""
    if retention_days <= 0:
        return None
    return now_ms - round(retention_days * DAY_MS)


def delete_expired_executions(
    db: Db, *, ended_before_ms: int, limit: int = RETENTION_BATCH_ROWS
) -> int:
    """Delete at most ``limit`` executions in a final status that ended before
    ``ended_before_ms``, oldest first, in one transaction; returns how many went (fewer
    than ``limit``: nothing more to delete now). Raises ``ValueError`` for ``limit`` < 1."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit}")
    oldest = (
        select(_e.c.id)
        .where(_e.c.ended_ms < ended_before_ms, _e.c.status.in_(FINAL_EXECUTION_STATUSES))
        .order_by(_e.c.ended_ms)
        .limit(limit)
    )
    stmt = delete(_e).where(_e.c.id.in_(oldest.scalar_subquery()))
    with writing(db) as conn:
        deleted: int = conn.execute(stmt).rowcount
    if deleted:
        log.info("retention: %s execution(s) ended before %s ms deleted", deleted, ended_before_ms)
    return deleted
