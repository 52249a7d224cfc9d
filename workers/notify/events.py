"""Building the cluster's events (pure): what happened, as an :class:`Event` with its id.

Each builder takes what the emitter has at hand and returns the event, or None when the
happening is not notified. An event's id is deterministic — built from what identifies the
happening, never from the time it is emitted — so a re-emission after a crash carries the
same id, and receivers dedupe on it:

==========================================  =============================================
id                                          emitted by
==========================================  =============================================
``member.<state>:<uuid>:<at_ms>``           the liveness worker, with the state change
``takeover.<outcome>:<proposal id>``        the takeover worker, after the decision
``recovery.<outcome>:<proposal id>``        the recovery worker, after the decision
``<takeover|recovery>.held:<proposal id>``  the worker whose proposal the guard holds
``takeover.released:<released ms>``         ``qwc takeover release`` (CLI or manager)
``execution.<kind>:<execution id>``         the member running the execution
==========================================  =============================================

Times in ``data`` are epoch milliseconds (``*_ms``); the payload adds the event's time in
ISO 8601 (:mod:`workers.notify.payload`). docs/notifications.md documents every type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from schemas.events import EVENTS_MAXLEN, EventType, member_event
from schemas.messages import Event

if TYPE_CHECKING:
    from workers.store import RecoveryRow, TakeoverRow

__all__ = [
    "EVENTS_MAXLEN",
    "OUTPUT_TAIL_MAX_CHARS",
    "ExecutionFacts",
    "decided_event",
    "execution_event",
    "execution_kind",
    "held_event",
    "member_event",
    "released_event",
]

OUTPUT_TAIL_MAX_CHARS = 4096  # of an execution's output, the last characters an event carries
_DECIDED = {
    ("takeover", "committed"): EventType.TAKEOVER_COMMITTED,
    ("takeover", "cancelled"): EventType.TAKEOVER_CANCELLED,
    ("recovery", "committed"): EventType.RECOVERY_COMMITTED,
    ("recovery", "cancelled"): EventType.RECOVERY_CANCELLED,
}
_HELD = {"takeover": EventType.TAKEOVER_HELD, "recovery": EventType.RECOVERY_HELD}


def _member(uuid: str, names: Mapping[str, str]) -> dict[str, Any]:
    return {"uuid": uuid, "name": names.get(uuid, "")}


def decided_event(
    what: str, row: TakeoverRow | RecoveryRow, names: Mapping[str, str]
) -> Event | None:
    """``<what>.committed`` / ``<what>.cancelled`` from a proposal's audit row (``what`` is
    ``takeover`` or ``recovery``); None for any other outcome (pending, skipped,
    no_destination, held: not notified this way)."""
    kind = _DECIDED.get((what, row.outcome or ""))
    if kind is None or row.decided_ms is None:
        return None
    data: dict[str, Any] = {
        "proposal_id": row.proposal_id,
        "member": _member(row.dead_uuid, names),
        "policy": row.policy,
        "outcome": row.outcome,
        "proposed_ms": row.proposed_ms,
        "due_ms": row.due_ms,
        "decided_ms": row.decided_ms,
        "detail": row.detail,
    }
    if what == "takeover":
        takeover = cast("TakeoverRow", row)
        data["jobs_moved"] = takeover.jobs_moved
        data["destinations"] = [
            {**_member(uuid, names), "jobs": jobs}
            for uuid, jobs in sorted(takeover.destinations.items())
        ]
    else:
        recovery = cast("RecoveryRow", row)
        data["executions_marked"] = recovery.executions_marked
        data["retries"] = [dict(r) for r in recovery.retries]
    return Event(id=f"{kind}:{row.proposal_id}", kind=kind, at_ms=row.decided_ms, data=data)


def held_event(
    what: str, *, proposal_id: str, dead_uuid: str, reason: str, at_ms: int, name: str = ""
) -> Event:
    """``<what>.held``: the mass-failure guard holds proposal ``proposal_id`` (``at_ms``:
    when the worker found it so, Redis ms)."""
    kind = _HELD[what]
    data: dict[str, Any] = {
        "proposal_id": proposal_id,
        "member": {"uuid": dead_uuid, "name": name},
        "reason": reason,
        "release": "qwc takeover release",
    }
    return Event(id=f"{kind}:{proposal_id}", kind=kind, at_ms=at_ms, data=data)


def released_event(released_ms: int, held: Mapping[str, str]) -> Event:
    """``takeover.released``: an operator released the guard at ``released_ms`` (Redis ms),
    letting the proposals ``held`` (id -> why it was held) proceed."""
    kind = EventType.TAKEOVER_RELEASED
    data: dict[str, Any] = {
        "released_ms": released_ms,
        "held": len(held),
        "proposals": sorted(held),
    }
    return Event(id=f"{kind}:{released_ms}", kind=kind, at_ms=released_ms, data=data)


class ExecutionFacts(Protocol):
    """What an execution event tells of the execution (``workers.store.ExecutionRow``
    fits); times are epoch ms."""

    @property
    def id(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def member_uuid(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def retry_of(self) -> str | None: ...
    @property
    def trigger(self) -> str: ...
    @property
    def fire_ms(self) -> int: ...
    @property
    def started_ms(self) -> int | None: ...
    @property
    def ended_ms(self) -> int | None: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def output(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...


def execution_kind(status: str, *, retrying: bool) -> EventType | None:
    """The event of an execution that has just reached ``status``: ``running`` -> started,
    ``succeeded``, ``failed`` -> failed, or retryable_failure when a retry follows
    (``retrying``), ``timedout`` -> timed_out; None for the others (scheduled, aborted,
    incomplete: the recovery's events tell of those)."""
    if status == "failed":
        return EventType.EXECUTION_RETRYABLE_FAILURE if retrying else EventType.EXECUTION_FAILED
    return {
        "running": EventType.EXECUTION_STARTED,
        "succeeded": EventType.EXECUTION_SUCCEEDED,
        "timedout": EventType.EXECUTION_TIMED_OUT,
    }.get(status)


def execution_event(
    execution: ExecutionFacts,
    *,
    job: tuple[str, str, str],
    member_name: str,
    retrying: bool,
    at_ms: int,
    hook_urls: tuple[str, ...] = (),
) -> Event | None:
    """The event of ``execution`` having just reached its status (see
    :func:`execution_kind`; None: not notified). ``job`` is its job's (project, group,
    name); ``retrying``: another attempt will follow; ``at_ms``: when the status was written;
    ``hook_urls``: the job's own webhooks for this event. The output is cut to its last
    :data:`OUTPUT_TAIL_MAX_CHARS` characters."""
    kind = execution_kind(execution.status, retrying=retrying)
    if kind is None:
        return None
    output = execution.output
    started = execution.started_ms
    project, group, name = job
    data: dict[str, Any] = {
        "execution": {
            "id": execution.id,
            "status": execution.status,
            "attempt": execution.attempt,
            "retry_of": execution.retry_of,
            "trigger": execution.trigger,
            "exit_code": execution.exit_code,
            "output_tail": None if output is None else output[-OUTPUT_TAIL_MAX_CHARS:],
            "reason": execution.reason,
            "fire_ms": execution.fire_ms,
            "started_ms": started,
            "ended_ms": execution.ended_ms,
            "lateness_ms": None if started is None else started - execution.fire_ms,
        },
        "job": {
            "id": execution.job_id,
            "project": project,
            "group": group,
            "name": name,
            "path": "/".join(part for part in job if part),
        },
        "member": {"uuid": execution.member_uuid, "name": member_name},
        "retrying": retrying,
    }
    return Event(
        id=f"{kind}:{execution.id}", kind=kind, at_ms=at_ms, data=data, hook_urls=hook_urls
    )
