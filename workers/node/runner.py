"""How an execution's outcome is recorded (the pool's far end).

What an execution runs, and the environment it runs in, is :mod:`workers.node.executors`
(:func:`~workers.node.executors.prepare`); the pool (:mod:`workers.node.pool`) runs it and
hands an :class:`Ended` to the recorder.

:func:`record_outcome` (one) and :func:`record_outcomes` (many, one transaction) write how
an execution ended: ``succeeded`` (exit code 0, or the HTTP status expected), ``failed``
(another exit code or HTTP status, a command that could not start, a job whose executor
cannot be prepared) or ``timedout`` (the job's timeout ended it), each with its output
and, when there is one, the reason in words. A ``failed`` or ``timedout`` run of a job
with retries left (:data:`RETRIED_STATUSES`) gets its retry in the same transaction
(attempt + 1, on this member, not before the job's retry delay). When the execution was
ended by someone who recorded the outcome already (an abort, a ``replace``, a recovery
elsewhere, a drain), nothing is written. Every write is conditional on the execution
still running: nothing is written over another's outcome.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from workers.recovery.decide import next_retry
from workers.store import (
    Db,
    Finish,
    NewExecution,
    StartedExecution,
    Store,
    ended_at,
    finish_execution,
    finish_executions,
    lock_jobs,
)

__all__ = [
    "RETRIED_STATUSES",
    "EndRequest",
    "Ended",
    "Recorded",
    "record_outcome",
    "record_outcomes",
    "retry_for",
]

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({"failed", "timedout"})  # statuses a job's retries apply to


@dataclass(frozen=True)
class EndRequest:
    """Why an execution was ended before its command finished: ``status`` is what to
    record (None: its ender recorded the outcome already), ``reason`` says why, in words."""

    status: str | None
    reason: str


@dataclass(frozen=True)
class Ended:
    """How an execution ended. ``status``: what to record (None: its ender recorded it
    already; ``reason`` then says who). ``exit_code``: None when no process ran or none
    exited (an HTTP call, a command that could not start), negative when a signal ended it
    (``-signal``). ``output``: what it printed, bounded by the pool. ``ended_ms``: when it
    ended (epoch ms, stamped by the pool; None: when its outcome is written)."""

    execution: StartedExecution
    status: str | None
    output: str = ""
    exit_code: int | None = None
    reason: str | None = None
    ended_ms: int | None = None

    def at_ms(self, written_ms: int) -> int:
        """When it ended: ``ended_ms``, or ``written_ms`` (when its outcome is written)."""
        return written_ms if self.ended_ms is None else self.ended_ms


def retry_for(ended: Ended, *, now_ms: int) -> NewExecution | None:
    """The retry ``ended`` gets (a failed or timed-out run of a job with retries left), or
    None."""
    e = ended.execution
    if ended.status not in RETRIED_STATUSES:
        return None
    return next_retry(
        execution_id=e.id,
        retry_of=e.retry_of,
        job_id=e.job_id,
        attempt=e.attempt,
        retry_count=e.retry_count,
        retry_delay_s=e.retry_delay_s,
        to_uuid=e.member_uuid,
        now_ms=now_ms,
        new_id=str(uuid.uuid4()),
    )


def record_outcome(db: Db, ended: Ended, *, now_ms: int) -> bool:
    """Record ``ended`` (module docstring), written at ``now_ms`` (it ended at
    ``ended.at_ms(now_ms)``: its retry's delay counts from then); True when this changed
    the execution (False: nothing to record, or it had ended already). Store errors
    propagate."""
    status, e = ended.status, ended.execution
    if status is None:
        log.info("execution %s: ended: %s", e.id, ended.reason)
        return False
    at_ms = ended.at_ms(now_ms)
    retry = retry_for(ended, now_ms=at_ms)
    changed = finish_execution(
        db,
        e.id,
        status=status,
        now_ms=at_ms,
        exit_code=ended.exit_code,
        output=ended.output,
        reason=ended.reason,
        retry=retry,
    )
    if not changed:
        log.warning("execution %s: had ended already; %s not recorded", e.id, status)
        return False
    _log_recorded(ended)
    if retry is not None:
        log.info(
            "execution %s: retry %s (attempt %s) at %s ms",
            e.id,
            retry.id,
            retry.attempt,
            retry.fire_ms,
        )
    return True


@dataclass(frozen=True)
class Recorded:
    """An outcome this member wrote (its conditional update changed the execution), and
    whether a retry follows it."""

    ended: Ended
    retrying: bool


def record_outcomes(store: Store, ended: Sequence[Ended], *, now_ms: int) -> list[Recorded]:
    """Record many outcomes, written at ``now_ms`` (each ended at its own ``at_ms``), in one
    transaction: those with a retry one by one
    (:func:`record_outcome`), the others with one statement for all
    (:func:`workers.store.finish_executions`). The jobs of those with a retry are locked
    first, before any execution changes, as a fire locks its job before its ``replace``
    aborts executions: one lock order, no deadlock. Returns the outcomes written (what
    the member's events tell). Store errors propagate (nothing written)."""
    plain: list[Finish] = []
    done: list[Recorded] = []
    by_id: dict[str, Ended] = {}
    retried = {o.execution.job_id for o in ended if retry_for(o, now_ms=0) is not None}
    with store.begin() as conn:
        lock_jobs(conn, retried)
        for one in ended:
            status = one.status
            if status is None or retry_for(one, now_ms=0) is not None:
                if record_outcome(conn, one, now_ms=now_ms):
                    done.append(Recorded(one, retrying=status in RETRIED_STATUSES))
                continue
            plain.append(
                Finish(
                    one.execution.id,
                    status,
                    one.exit_code,
                    one.output,
                    one.reason,
                    one.at_ms(now_ms),
                )
            )
            by_id[one.execution.id] = one
            _log_recorded(one)
        changed = finish_executions(conn, plain, now_ms=now_ms)
        written = (
            set(by_id)
            if changed == len(plain)
            else ended_at(conn, {f.id: (f.status, by_id[f.id].at_ms(now_ms)) for f in plain})
        )
    if len(written) < len(plain):
        log.warning(
            "%s of %s outcomes not recorded: ended already", len(plain) - len(written), len(plain)
        )
    return done + [Recorded(by_id[f.id], retrying=False) for f in plain if f.id in written]


def _log_recorded(ended: Ended) -> None:
    why = f": {ended.reason}" if ended.reason else ""
    log.info("execution %s: %s (exit %s)%s", ended.execution.id, ended.status, ended.exit_code, why)
