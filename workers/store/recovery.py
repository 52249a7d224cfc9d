"""Recover executions: one transaction marks a dead member's running executions
``incomplete``, inserts the retries decided for them and re-homes its pending ones.

The decision (which execution is retried, where, when) is made by the caller from
:func:`running_executions` (and :func:`count_unfinished`, which also finds the dead members
that still need a recovery); :func:`commit_recovery` applies it. Marking is conditional on
``status = 'running'``, and a retry is inserted only for an execution this transaction
marked, so a racing worker or a second proposal cannot retry an execution twice. The
audit row (``recoveries``, proposal id unique) is written first: committing one proposal
twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from schemas.tables import executions, scheduled_jobs
from workers.store._db import Db, reading, writing
from workers.store.audit import record_recovery
from workers.store.executions import (
    NewExecution,
    insert_executions,
    lock_jobs,
    mark_incomplete,
    move_scheduled_executions,
)

__all__ = [
    "RecoveryResult",
    "RunningExecution",
    "Unfinished",
    "commit_recovery",
    "count_unfinished",
    "running_executions",
]

log = logging.getLogger(__name__)

_e, _j = executions, scheduled_jobs


@dataclass(frozen=True)
class RunningExecution:
    """A running execution with its job's retry settings (what a recovery decides from)."""

    id: str
    job_id: str
    member_uuid: str
    attempt: int
    retry_of: str | None
    retry_count: int
    retry_delay_s: float

    @property
    def first_id(self) -> str:
        """The first execution of its retry chain."""
        return self.retry_of or self.id


@dataclass(frozen=True)
class RecoveryResult:
    """What :func:`commit_recovery` did. ``committed`` False: the proposal already had a
    final outcome, nothing changed. ``retries`` is what the audit row lists."""

    committed: bool
    marked: list[str] = field(default_factory=list)
    retries: list[dict[str, Any]] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Unfinished:
    """A member's executions that a recovery acts on: ``running``, and ``waiting``
    (``scheduled``, not started: due or not, queued or not)."""

    running: int = 0
    waiting: int = 0


def count_unfinished(db: Db, member_uuids: Collection[str]) -> dict[str, Unfinished]:
    """:class:`Unfinished` counts of each of ``member_uuids`` that has any; one grouped
    query on the (member, status) index."""
    if not member_uuids:
        return {}
    stmt = (
        select(_e.c.member_uuid, _e.c.status, func.count())
        .where(_e.c.member_uuid.in_(list(member_uuids)))
        .where(_e.c.status.in_(["running", "scheduled"]))
        .group_by(_e.c.member_uuid, _e.c.status)
    )
    counts: dict[str, dict[str, int]] = {}
    with reading(db) as conn:
        for member, status, n in conn.execute(stmt):
            counts.setdefault(member, {})[status] = int(n)
    return {
        m: Unfinished(running=c.get("running", 0), waiting=c.get("scheduled", 0))
        for m, c in counts.items()
    }


def running_executions(db: Db, member_uuid: str) -> list[RunningExecution]:
    """``member_uuid``'s ``running`` executions with their jobs' retry settings, by id."""
    stmt = (
        select(
            _e.c.id,
            _e.c.job_id,
            _e.c.member_uuid,
            _e.c.attempt,
            _e.c.retry_of,
            _j.c.retry_count,
            _j.c.retry_delay_s,
        )
        .join(_j, _j.c.id == _e.c.job_id)
        .where(_e.c.member_uuid == member_uuid, _e.c.status == "running")
        .order_by(_e.c.id)
    )
    with reading(db) as conn:
        return [RunningExecution(**row) for row in conn.execute(stmt).mappings()]


def commit_recovery(
    db: Db,
    *,
    proposal_id: str,
    dead_uuid: str,
    policy: str,
    proposed_ms: int,
    due_ms: int,
    now_ms: int,
    mark: Sequence[str],
    retries: Mapping[str, NewExecution],
    reschedule_to: str | None = None,
    detail: str = "",
    reason: str | None = None,
) -> RecoveryResult:
    """In one transaction: claim the audit row of ``proposal_id``; mark the executions
    ``mark`` of ``dead_uuid`` ``incomplete`` (those still running); insert
    ``retries[execution id]`` for each one marked; move ``dead_uuid``'s not yet started
    executions to ``reschedule_to`` (when given); record the outcome ``committed``.

    The executions marked get ``reason`` (default: their member was dead, and which
    recovery marked them). Times are epoch ms.
    """
    audit: dict[str, Any] = {
        "proposal_id": proposal_id,
        "dead_uuid": dead_uuid,
        "policy": policy,
        "proposed_ms": proposed_ms,
        "due_ms": due_ms,
    }
    with writing(db) as conn:
        if not record_recovery(conn, **audit):
            log.info("recovery %s: already decided; nothing done", proposal_id)
            return RecoveryResult(committed=False)
        lock_jobs(conn, {r.job_id for r in retries.values()})  # jobs first, as a fire
        why = reason or f"member {dead_uuid} dead; marked by recovery {proposal_id}"
        marked = (
            mark_incomplete(
                conn, member_uuid=dead_uuid, now_ms=now_ms, execution_ids=mark, reason=why
            )
            if mark
            else []
        )
        # a job deleted or whose executions were disabled gets no retry
        inserted = set(
            insert_executions(conn, [retries[i] for i in marked if i in retries], now_ms=now_ms)
        )
        rescheduled = (
            move_scheduled_executions(conn, from_member=dead_uuid, to_member=reschedule_to)
            if reschedule_to is not None
            else []
        )
        listed = [
            _retry_json(execution_id, dead_uuid, retries[execution_id])
            for execution_id in marked
            if execution_id in retries and retries[execution_id].id in inserted
        ]
        record_recovery(
            conn,
            **audit,
            decided_ms=now_ms,
            outcome="committed",
            executions_marked=len(marked),
            retries=listed,
            detail=detail or _detail(marked, listed, rescheduled, reschedule_to),
        )
    return RecoveryResult(True, marked, listed, rescheduled)


def _retry_json(execution_id: str, from_uuid: str, retry: NewExecution) -> dict[str, Any]:
    return {
        "execution": execution_id,
        "job": retry.job_id,
        "from": from_uuid,
        "to": retry.member_uuid,
        "retry_execution": retry.id,
        "attempt": retry.attempt,
        "not_before_ms": retry.fire_ms,
    }


def _detail(
    marked: Sequence[str],
    retried: Sequence[Any],
    rescheduled: Sequence[str],
    reschedule_to: str | None,
) -> str:
    text = f"{len(marked)} execution(s) marked incomplete, {len(retried)} retried"
    if rescheduled:
        text += f"; {len(rescheduled)} pending execution(s) moved to {reschedule_to}"
    return text
