"""How one execution runs and how its outcome is recorded (the pool's two ends).

* :class:`Invocation` is what the pool runs: an argv (no shell), the variables added to
  the node's environment, and an optional deadline. :func:`invocation_for` builds it for a
  started execution: the job's command, and the execution's identity in the environment:

  ===================  ==============================================================
  QWC_JOB_ID           the job's id
  QWC_EXECUTION_ID     the execution's id
  QWC_FIRE_TIME        its fire time, epoch milliseconds (UTC), as ``fire_ms`` in
                       ``qwc executions --json``; for a retry, the time it was due
  QWC_ATTEMPT          1 for the first run, 2 for the first retry, ...
  QWC_MEMBER_UUID      the member running it
  ===================  ==============================================================

* :class:`OutputTail` keeps the last ``max_bytes`` of a command's output (stdout and
  stderr together) in bounded memory, whatever the command writes.

* :func:`record_outcome` (one) and :func:`record_outcomes` (many, one transaction) write
  how an execution ended: ``succeeded`` (exit code 0) or
  ``failed`` — a failed run of a job with retries left gets its retry in the same
  transaction (attempt + 1, on this member, not before the job's retry delay) — or the
  status its ender asked for (:class:`EndRequest`), or nothing at all when the ender
  recorded it already (an abort, a recovery elsewhere, a drain). Every write is
  conditional on the execution still running: nothing is written over another's outcome.
"""

from __future__ import annotations

import collections
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workers.recovery.decide import next_retry
from workers.store import (
    Db,
    Finish,
    NewExecution,
    StartedExecution,
    Store,
    finish_execution,
    finish_executions,
)

__all__ = [
    "OUTPUT_TAIL_BYTES",
    "RETRIED_STATUSES",
    "EndRequest",
    "Ended",
    "Invocation",
    "OutputTail",
    "execution_env",
    "invocation_for",
    "record_outcome",
    "record_outcomes",
    "retry_for",
]

log = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 4096
RETRIED_STATUSES = frozenset({"failed"})  # statuses a job's retries apply to


@dataclass(frozen=True)
class Invocation:
    """What the pool runs for an execution: ``argv`` (no shell), ``env`` added to the
    node's environment, and ``deadline_ms`` (epoch ms; None: none) at which the pool ends
    it with status ``timedout``."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    deadline_ms: int | None = None


def execution_env(execution: StartedExecution) -> dict[str, str]:
    """The execution's identity as environment variables (module docstring)."""
    return {
        "QWC_JOB_ID": execution.job_id,
        "QWC_EXECUTION_ID": execution.id,
        "QWC_FIRE_TIME": str(execution.fire_ms),
        "QWC_ATTEMPT": str(execution.attempt),
        "QWC_MEMBER_UUID": execution.member_uuid,
    }


def invocation_for(execution: StartedExecution) -> Invocation:
    """The job's command, with the execution's identity in its environment."""
    return Invocation(execution.command, execution_env(execution))


class OutputTail:
    """The last ``max_bytes`` of what was fed, in memory bounded by about ``max_bytes`` plus
    one chunk. Not thread-safe (one reader per command)."""

    def __init__(self, max_bytes: int = OUTPUT_TAIL_BYTES) -> None:
        self.max_bytes = max_bytes
        self._chunks: collections.deque[bytes] = collections.deque()
        self._kept = 0

    def feed(self, chunk: bytes) -> None:
        """Add the next bytes of the output."""
        self._chunks.append(chunk)
        self._kept += len(chunk)
        while len(self._chunks) > 1 and self._kept - len(self._chunks[0]) >= self.max_bytes:
            self._kept -= len(self._chunks.popleft())

    def text(self) -> str:
        """The tail as text (UTF-8; undecodable bytes replaced)."""
        if self.max_bytes <= 0:
            return ""
        return b"".join(self._chunks)[-self.max_bytes :].decode("utf-8", errors="replace")


@dataclass(frozen=True)
class EndRequest:
    """Why an execution was ended before its command finished: ``status`` is what to
    record (None: its ender recorded the outcome already), ``reason`` says why, in words."""

    status: str | None
    reason: str


@dataclass(frozen=True)
class Ended:
    """How a command ended. ``exit_code``: None when it could not be started (``output``
    then says why), negative when a signal ended it (``-signal``). ``ended_by``: set when
    the pool ended it (:meth:`workers.node.pool.ExecutionPool.end`)."""

    execution: StartedExecution
    exit_code: int | None
    output: str
    ended_by: EndRequest | None = None

    @property
    def status(self) -> str | None:
        """The status to record: the ender's, else ``succeeded`` (exit 0) or ``failed``."""
        if self.ended_by is not None:
            return self.ended_by.status
        return "succeeded" if self.exit_code == 0 else "failed"


def retry_for(ended: Ended, *, now_ms: int) -> NewExecution | None:
    """The retry ``ended`` gets (a failed run of a job with retries left), or None."""
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
    """Record ``ended`` (module docstring) at ``now_ms``; True when this changed the
    execution (False: nothing to record, or it had ended already). Store errors
    propagate."""
    status, e = ended.status, ended.execution
    if status is None:
        log.info("execution %s: ended: %s", e.id, ended.ended_by and ended.ended_by.reason)
        return False
    retry = retry_for(ended, now_ms=now_ms)
    changed = finish_execution(
        db,
        e.id,
        status=status,
        now_ms=now_ms,
        exit_code=ended.exit_code,
        output_tail=ended.output,
        retry=retry,
    )
    if not changed:
        log.warning("execution %s: had ended already; %s not recorded", e.id, status)
        return False
    log.info("execution %s: %s (exit %s)", e.id, status, ended.exit_code)
    if retry is not None:
        log.info(
            "execution %s: retry %s (attempt %s) at %s ms",
            e.id,
            retry.id,
            retry.attempt,
            retry.fire_ms,
        )
    return True


def record_outcomes(store: Store, ended: Sequence[Ended], *, now_ms: int) -> None:
    """Record many outcomes at ``now_ms`` in one transaction: those with a retry one by one
    (:func:`record_outcome`), the others with one statement for all
    (:func:`workers.store.finish_executions`). Store errors propagate (nothing written)."""
    plain: list[Finish] = []
    with store.begin() as conn:
        for one in ended:
            status = one.status
            if status is None or retry_for(one, now_ms=now_ms) is not None:
                record_outcome(conn, one, now_ms=now_ms)
                continue
            e = one.execution
            plain.append(Finish(e.id, status, one.exit_code, one.output))
            log.info("execution %s: %s (exit %s)", e.id, status, one.exit_code)
        changed = finish_executions(conn, plain, now_ms=now_ms)
    if 0 <= changed < len(plain):
        log.warning(
            "%s of %s outcomes not recorded: ended already", len(plain) - changed, len(plain)
        )
