"""New executions admitted by their job's concurrency policy, in the caller's transaction.

:func:`admit` is the one place a new execution of a job meets the job's other executions:
a fire (``workers.store.fence``: one claimed fire, or the batch of a scheduling pass) and a
remote run (:func:`admit_execution`) both go through it. For a batch of new executions of
distinct jobs it runs, whatever the batch size:

1. one SELECT of the active (``running`` or ``scheduled``) executions of the jobs whose
   policy is not ``allow``, on any member (the (job_id, status) index: never a job's whole
   history);
2. the pure decision per job (:func:`workers.store.concurrency.decide_admission`);
3. with ``replace``, one UPDATE marking the replaced executions ``aborted`` with the reason
   ``replaced by <new id>`` (only those still active);
4. one INSERT of the new executions, ``scheduled`` or ``skipped`` with the reason (a
   scheduled one keeps its own, e.g. a catch-up's).

The caller holds each job's row lock (the fence's claim UPDATE, or ``SELECT … FOR
UPDATE``) and has checked that the job is live with its executions enabled, so two
admissions of one job never both see "nothing running", and nothing is admitted for a
deleted or disabled job.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, case, select

from schemas.errors import ConflictError, NotFoundError
from schemas.tables import executions, scheduled_jobs
from workers.store._db import Db, reading, writing
from workers.store.concurrency import ACTIVE_STATUSES, ActiveExecution, decide_admission
from workers.store.executions import NewExecution, insert_checked

__all__ = ["Admitted", "admit", "admit_execution", "jobs_with_active"]

log = logging.getLogger(__name__)

_t, _e = scheduled_jobs, executions


@dataclass(frozen=True)
class Admitted:
    """A new execution as the job's concurrency policy admitted it: ``status``
    ``scheduled`` (to run) or ``skipped`` (recorded, never run; ``reason`` says why), and
    the executions it replaced (now ``aborted`` because of ``abort_reason``; policy
    ``replace``): their members end their process groups."""

    execution_id: str
    status: str
    reason: str | None = None
    aborted: tuple[str, ...] = ()
    abort_reason: str | None = None


def admit(
    conn: Connection, policies: Sequence[str], new: Sequence[NewExecution], *, now_ms: int
) -> list[Admitted]:
    """Apply ``policies[i]`` to ``new[i]`` (executions of distinct jobs, status
    ``scheduled``) and insert them all at ``now_ms`` (module docstring), in the caller's
    transaction with the jobs' rows locked. Returns what became of each, in order. Raises
    ``ValueError`` for an unknown policy (nothing written)."""
    if len(policies) != len(new):
        raise ValueError("one policy per new execution")
    active = _active(conn, {n.job_id for p, n in zip(policies, new, strict=True) if p != "allow"})
    decided = [
        decide_admission(p, active.get(n.job_id, ()), new_id=n.id)
        for p, n in zip(policies, new, strict=True)
    ]
    reasons = {old: d.abort_reason or "" for d in decided for old in d.abort}
    aborted = _abort(conn, reasons, now_ms=now_ms)
    rows = [
        dataclasses.replace(n, status=d.status, reason=d.reason or n.reason)
        for n, d in zip(new, decided, strict=True)
    ]
    insert_checked(conn, rows, now_ms=now_ms)
    admitted = []
    for n, d in zip(new, decided, strict=True):
        replaced = tuple(sorted(aborted.intersection(d.abort)))
        if d.status == "skipped":
            log.info("job %s: execution %s skipped: %s", n.job_id, n.id, d.reason)
        for old in replaced:
            log.info("job %s: execution %s aborted: replaced by %s", n.job_id, old, n.id)
        admitted.append(Admitted(n.id, d.status, d.reason, replaced, d.abort_reason))
    return admitted


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
        new = NewExecution(
            id=execution_id or str(uuid.uuid4()),
            job_id=job_id,
            member_uuid=member_uuid,
            fire_ms=fire_ms,
            trigger=trigger,
        )
        return admit(conn, [policy], [new], now_ms=now_ms)[0]


def jobs_with_active(db: Db, job_ids: Collection[str]) -> set[str]:
    """Of ``job_ids``, the jobs with an execution that has not ended (``scheduled`` or
    ``running``, on any member): a read, no lock (the member's fire-ahead claims only the
    others early)."""
    if not job_ids:
        return set()
    with reading(db) as conn:
        return set(_active(conn, job_ids))


def _active(conn: Connection, job_ids: Collection[str]) -> dict[str, list[ActiveExecution]]:
    """The executions of ``job_ids`` that have not ended, on any member, by job (one
    SELECT on the (job_id, status) index)."""
    if not job_ids:
        return {}
    stmt = select(_e.c.job_id, _e.c.id, _e.c.member_uuid, _e.c.status).where(
        _e.c.job_id.in_(list(job_ids)), _e.c.status.in_(ACTIVE_STATUSES)
    )
    by_job: dict[str, list[ActiveExecution]] = {}
    for job_id, *rest in conn.execute(stmt):
        by_job.setdefault(job_id, []).append(ActiveExecution(*rest))
    return by_job


def _abort(conn: Connection, reasons: dict[str, str], *, now_ms: int) -> set[str]:
    """Mark the executions ``reasons`` names ``aborted`` with their reason, those still
    active (one conditional UPDATE); the ids it changed."""
    if not reasons:
        return set()
    stmt = (
        _e.update()
        .where(_e.c.id.in_(list(reasons)), _e.c.status.in_(ACTIVE_STATUSES))
        .values(status="aborted", ended_ms=now_ms, reason=case(reasons, value=_e.c.id))
        .returning(_e.c.id)
    )
    return set(conn.execute(stmt).scalars())
