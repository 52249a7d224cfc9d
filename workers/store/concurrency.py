"""A job's concurrency policy, decided when a new execution of it is admitted (pure).

When a member fires a job (or runs it on a remote command), the job's executions that are
still *active* — ``running``, or ``scheduled`` and not started yet (queued behind a full
pool, a pending retry) — on ANY member decide what becomes of the new one:

=========  ===================================================================================
policy     the new execution, when the job has active executions
=========  ===================================================================================
allow      ``scheduled``: runs beside them (overlap)
forbid     ``skipped`` with a reason naming one of them: never runs (its fire time is claimed
           all the same, so it is not fired twice, nor reported missed)
replace    ``scheduled``; the active ones become ``aborted`` with the reason
           ``replaced by <new id>`` (their members end their process groups when they see it)
=========  ===================================================================================

An execution on a dead or cut-off member counts until a recovery settles it (marks it
``incomplete``): the store is the only thing every member agrees on, so "running" means
what the store says. ``Kubernetes CronJob.spec.concurrencyPolicy`` and Rundeck's
``multipleExecutions`` (false = ``forbid``) are the models.

:func:`decide_admission` is the decision; ``workers.store.fence`` reads the active
executions and applies it in the transaction that inserts the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.tables import CONCURRENCY_POLICIES

__all__ = ["ACTIVE_STATUSES", "ActiveExecution", "Admission", "decide_admission"]

ACTIVE_STATUSES = ("running", "scheduled")


@dataclass(frozen=True)
class ActiveExecution:
    """An execution of the job that has not ended: where it is and in which status."""

    id: str
    member_uuid: str
    status: str


@dataclass(frozen=True)
class Admission:
    """What becomes of a new execution: its ``status`` (``scheduled`` or ``skipped``), the
    ``reason`` when skipped, and the ids of active executions to mark ``aborted`` with
    ``abort_reason`` (policy ``replace``)."""

    status: str
    reason: str | None = None
    abort: tuple[str, ...] = ()
    abort_reason: str | None = None


def decide_admission(policy: str, active: Sequence[ActiveExecution], *, new_id: str) -> Admission:
    """The fate of execution ``new_id`` of a job with concurrency ``policy`` whose other
    executions ``active`` have not ended. Raises ``ValueError`` for an unknown policy."""
    if policy not in CONCURRENCY_POLICIES:
        raise ValueError(f"unknown concurrency policy {policy!r}")
    others = sorted((a for a in active if a.id != new_id), key=lambda a: (a.status, a.id))
    if policy == "allow" or not others:
        return Admission("scheduled")
    if policy == "forbid":
        first = others[0]
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        reason = (
            f"concurrency forbid: execution {first.id} is still {first.status} "
            f"on member {first.member_uuid}{more}"
        )
        return Admission("skipped", reason=reason)
    return Admission(
        "scheduled", abort=tuple(a.id for a in others), abort_reason=f"replaced by {new_id}"
    )
