"""The names of the cluster's events and the patterns a webhook receiver subscribes with.

An event's type is ``<family>.<what>`` (``member.dead``, ``takeover.committed``); the
payload of each is documented in docs/notifications.md. A receiver's
``qwcontrol.notifications.webhooks.<name>.events`` is a list of patterns, each ``*`` (every
event), ``<family>.*`` (``member.*``) or one type (``takeover.committed``). A pattern
naming no known family or type is refused when the settings are read: a typo never
subscribes to nothing in silence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from schemas.messages import Event, MembershipChange, MemberState

__all__ = [
    "EVENTS_MAXLEN",
    "EVENT_FAMILIES",
    "EVENT_TRIGGERS",
    "EventType",
    "check_pattern",
    "event_matches",
    "member_event",
    "trigger_of",
]


class EventType(StrEnum):
    """Every event type. ``execution.*`` are emitted by the members running the jobs."""

    MEMBER_INACTIVE = "member.inactive"
    MEMBER_DEAD = "member.dead"
    MEMBER_ACTIVE = "member.active"  # again: it was inactive or dead
    TAKEOVER_COMMITTED = "takeover.committed"
    TAKEOVER_CANCELLED = "takeover.cancelled"
    TAKEOVER_HELD = "takeover.held"
    TAKEOVER_RELEASED = "takeover.released"
    RECOVERY_COMMITTED = "recovery.committed"
    RECOVERY_CANCELLED = "recovery.cancelled"
    RECOVERY_HELD = "recovery.held"
    EXECUTION_STARTED = "execution.started"
    EXECUTION_SUCCEEDED = "execution.succeeded"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_RETRYABLE_FAILURE = "execution.retryable_failure"
    EXECUTION_TIMED_OUT = "execution.timed_out"
    NOTIFICATION_TEST = "notification.test"  # `qwc notifications test`: never emitted


# The trigger of a job's own webhooks (Rundeck's notification names, plus ``ontimeout``)
# each execution event fires: ``workers.jobs.hooks`` and the notify worker's fan-out.
EVENT_TRIGGERS: Mapping[str, str] = {
    EventType.EXECUTION_STARTED: "onstart",
    EventType.EXECUTION_SUCCEEDED: "onsuccess",
    EventType.EXECUTION_FAILED: "onfailure",
    EventType.EXECUTION_RETRYABLE_FAILURE: "onretryablefailure",
    EventType.EXECUTION_TIMED_OUT: "ontimeout",
}


def trigger_of(event_type: str) -> str | None:
    """The job-hook trigger an event type fires (``execution.failed`` -> ``onfailure``);
    None for the events that are not an execution's."""
    return EVENT_TRIGGERS.get(event_type)


# What a receiver may subscribe to (the sample of ``qwc notifications test`` goes to a URL).
_SUBSCRIBABLE = frozenset(t.value for t in EventType if t is not EventType.NOTIFICATION_TEST)
EVENT_FAMILIES = frozenset(t.partition(".")[0] for t in _SUBSCRIBABLE)


def check_pattern(pattern: str) -> str:
    """``pattern`` stripped when it is ``*``, ``<family>.*`` or an event type; else
    ValueError saying what is allowed."""
    text = pattern.strip()
    if text == "*" or text in _SUBSCRIBABLE:
        return text
    family, dot, rest = text.partition(".")
    if dot and rest == "*" and family in EVENT_FAMILIES:
        return text
    families = ", ".join(f"{f}.*" for f in sorted(EVENT_FAMILIES))
    raise ValueError(f"`{text}` is not an event type nor a pattern (*, {families})")


def event_matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether an event of ``event_type`` matches one of ``patterns`` (checked patterns)."""
    family = event_type.partition(".")[0]
    return any(p in ("*", event_type, f"{family}.*") for p in patterns)


EVENTS_MAXLEN = 100_000  # the events stream keeps about this many (XADD MAXLEN ~)
_MEMBER_KINDS = {
    MemberState.INACTIVE: EventType.MEMBER_INACTIVE,
    MemberState.DEAD: EventType.MEMBER_DEAD,
    MemberState.ACTIVE: EventType.MEMBER_ACTIVE,
}


def member_event(change: MembershipChange) -> Event | None:
    """``member.inactive`` / ``member.dead`` / ``member.active`` for a state change; None
    for a member's first appearance (``from_state`` None -> active: not "active again").
    Here, beside the types, because the liveness view's own script appends them (the other
    events are built in :mod:`workers.notify.events`)."""
    if change.from_state is None and change.to_state is MemberState.ACTIVE:
        return None
    kind = _MEMBER_KINDS[change.to_state]
    return Event(
        id=f"{kind}:{change.uuid}:{change.at_ms}",
        kind=kind,
        at_ms=change.at_ms,
        data={
            "member": {"uuid": change.uuid, "name": change.name},
            "from_state": None if change.from_state is None else change.from_state.value,
            "to_state": change.to_state.value,
            "last_seen_ms": change.last_seen_ms,
            "reason": change.reason,
        },
    )
