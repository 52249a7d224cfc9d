"""The fire fence: a member fires a job only if the database agrees it still owns it.

One conditional UPDATE checks, in the database, that the member is the owner at the epoch
it knows, that the job is live with its schedule and its execution enabled, and that this
fire time was not claimed yet (nor a later one). Zero rows changed means the member lost
the job (taken over or modified elsewhere; disabled or deleted) or another process already
fired this time: it unschedules the job and moves on. Double fires are impossible by
construction, whatever the timing.

The same transaction applies the job's concurrency policy (``workers.store.concurrency``,
through :func:`workers.store.admission.admit`): the claim returns the policy, the job's
active executions on any member are read (not for ``allow``), and the new execution is
inserted ``scheduled`` or ``skipped``; with ``replace`` the active ones are marked
``aborted`` ("replaced by <new id>") in that transaction too. Fires of one job are
serialised (only its owner fires it, and the claim's UPDATE locks the job's row until the
commit). A remote run (``qwc run``) goes through
:func:`workers.store.admission.admit_execution`, which takes the same row lock (``SELECT …
FOR UPDATE``; SQLite has one writer at a time anyway), so a remote run and a fire of one
job never both see "nothing running"; it refuses a job whose executions are disabled
(``ConflictError``) or that was deleted (``NotFoundError``), whoever asks.

A catch-up (misfire policy ``fire_once``) is a fire like any other: it claims its
``fire_ms`` (the newest of the missed times, so every older one is claimed with it) at the
member's epoch, and records the execution with the trigger ``catchup``, the missed times
(``missed_ms``) and their count and span as its reason. A member that lost the job (taken
over while it was cut off) is refused like for any fire: the catch-up runs once, on the
owner.

A retry replaces the execution it retries in one transaction, so an active execution never
disappears from view between the two.

A member's scheduling pass claims all its due fires with :func:`claim_fires`: one fenced
UPDATE per batch of distinct jobs, then their admission as a batch (one SELECT, one
INSERT), all in one transaction. The same UPDATE adds each claim's ``missed_fires`` (the
fire times of the job missed before it: misfires, see :mod:`workers.node.scheduler`) to
the job's count: a member fenced out of the job counts nothing, and a time is counted once
(the claim moves ``last_fire_ms`` past it).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, Integer, bindparam, case, or_
from sqlalchemy.sql.dml import UpdateBase

from schemas.tables import scheduled_jobs
from workers.store._db import Db, writing
from workers.store.admission import Admitted, admit
from workers.store.executions import NewExecution

__all__ = [
    "CLAIM_CHUNK",
    "FireClaim",
    "catchup_reason",
    "claim_fire",
    "claim_fires",
    "fire_job",
    "record_fire",
    "set_next_fire_ms",
]

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
        .where(_t.c.id == job_id, *_fenced(member_uuid, owner_epoch, fire_ms))
        .values(last_fire_ms=fire_ms)
        .returning(_t.c.concurrency)
    )
    policy: str | None = conn.execute(stmt).scalar_one_or_none()
    if policy is None:
        _log_refused(job_id, fire_ms, member_uuid, owner_epoch, now_ms)
    return policy


def _fenced(
    member_uuid: str | ColumnElement[str],
    owner_epoch: int | ColumnElement[int],
    fire_ms: int | ColumnElement[int],
) -> list[ColumnElement[bool]]:
    """The fence's conditions on a job row (values, or per-row expressions of them)."""
    return [
        _t.c.owner_uuid == member_uuid,
        _t.c.owner_epoch == owner_epoch,
        _t.c.enabled.is_(True),  # what the previous release checks: kept = both flags
        _t.c.schedule_enabled.is_(True),
        _t.c.execution_enabled.is_(True),
        _t.c.deleted_ms.is_(None),
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
        claim = FireClaim(job_id, owner_epoch, fire_ms, None, trigger, tuple(missed_ms))
        new = _fired(claim, member_uuid, execution_id)
        return admit(conn, [policy], [new], now_ms=now_ms)[0]


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


@dataclass(frozen=True)
class FireClaim:
    """One fire time to claim: ``job_id`` at ``fire_ms`` (epoch ms), owned at
    ``owner_epoch``; ``next_fire_ms`` is recorded as the job's next planned time (None:
    none, its schedule fires no more; :func:`record_fire` leaves it as it is).
    ``trigger`` ``schedule``, or ``catchup`` standing for ``missed_ms``. ``missed_fires``:
    fire times of the job missed before this one (misfires, never fired), added to the
    job's ``missed_fires`` by the same fenced UPDATE: counted once, and only when the claim
    is granted."""

    job_id: str
    owner_epoch: int
    fire_ms: int
    next_fire_ms: int | None
    trigger: str = "schedule"
    missed_ms: tuple[int, ...] = ()
    missed_fires: int = 0


def _fired(claim: FireClaim, member_uuid: str, execution_id: str | None) -> NewExecution:
    """The execution of a claimed fire, before its admission."""
    catchup = claim.trigger == "catchup"
    return NewExecution(
        id=execution_id or str(uuid.uuid4()),
        job_id=claim.job_id,
        member_uuid=member_uuid,
        fire_ms=claim.fire_ms,
        trigger=claim.trigger,
        owner_epoch=claim.owner_epoch,
        reason=catchup_reason(claim.missed_ms),
        missed_ms=claim.missed_ms if catchup else None,
    )


def claim_fires(
    db: Db, fires: Sequence[FireClaim], *, member_uuid: str, now_ms: int
) -> dict[FireClaim, Admitted]:
    """Claim ``fires`` through the fence and record an execution for each one claimed, as
    its job's concurrency policy admits it, all in one transaction. Per round of distinct
    jobs (several fires of one job go in successive rounds, in time order; at most
    :data:`CLAIM_CHUNK` jobs per round): ONE fenced UPDATE (each job's epoch, fire time and
    next planned time picked by its id) returning the jobs it claimed and their policies,
    then their admission as a batch (:func:`workers.store.admission.admit`: a later fire of
    a job sees the execution of its earlier one). Returns how each fire claimed was
    admitted (``scheduled``, ``skipped``, the executions it replaced); a fire missing from
    it was refused (the job was lost, or that time was claimed already)."""
    claimed: dict[FireClaim, Admitted] = {}
    with writing(db) as conn:
        for batch in _rounds(fires):
            rows = conn.execute(*_claim_statement(batch, member_uuid))
            won: dict[str, str] = {job_id: policy for job_id, policy in rows}
            for fire in batch:
                if fire.job_id not in won:
                    _log_refused(fire.job_id, fire.fire_ms, member_uuid, fire.owner_epoch, now_ms)
            ok = [f for f in batch if f.job_id in won]
            new = [_fired(f, member_uuid, None) for f in ok]
            policies = [won[f.job_id] for f in ok]
            claimed.update(zip(ok, admit(conn, policies, new, now_ms=now_ms), strict=True))
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


def _claim_statement(
    batch: Sequence[FireClaim], member_uuid: str
) -> tuple[UpdateBase, dict[str, Any]]:
    """One fenced UPDATE for ``batch`` (distinct jobs), returning the ids it claimed with
    their concurrency policies: the statement of its size (:func:`_claim_of_size`) and the
    batch's values for its parameters."""
    params: dict[str, Any] = {"member": member_uuid}
    for i, f in enumerate(batch):
        params.update({
            f"id_{i}": f.job_id,
            f"fire_{i}": f.fire_ms,
            f"epoch_{i}": f.owner_epoch,
            f"next_{i}": f.next_fire_ms,
            f"missed_{i}": f.missed_fires,
        })  # fmt: skip
    return _claim_of_size(len(batch)), params


@functools.lru_cache(maxsize=64)
def _claim_of_size(size: int) -> UpdateBase:
    """The fenced UPDATE of ``size`` distinct jobs: each job's epoch, fire time, next
    planned time and misfires picked by its id (``CASE id WHEN :id_i THEN …``), parameters
    ``id_i``, ``fire_i``, ``epoch_i``, ``next_i``, ``missed_i`` and ``member``. Built once
    per size: building one binds every value, as long as the statement is big."""

    types = {"fire": BigInteger(), "epoch": Integer(), "next": BigInteger(), "missed": BigInteger()}

    def by_id(name: str, else_: int | None = None) -> ColumnElement[Any]:
        # typed: a NULL of no type (a last fire has no next time) makes PostgreSQL's CASE text
        whens: dict[Any, Any] = {
            bindparam(f"id_{i}"): bindparam(f"{name}_{i}", type_=types[name]) for i in range(size)
        }
        return case(whens, value=_t.c.id, else_=else_)

    fire = by_id("fire")
    ids: list[Any] = [bindparam(f"id_{i}") for i in range(size)]
    return (
        _t.update()
        .where(_t.c.id.in_(ids), *_fenced(bindparam("member"), by_id("epoch"), fire))
        .values(
            last_fire_ms=fire,
            next_fire_ms=by_id("next"),
            missed_fires=_t.c.missed_fires + by_id("missed", else_=0),
        )
        .returning(_t.c.id, _t.c.concurrency)
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
