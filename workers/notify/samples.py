"""Sample events for ``qwc notifications test``: shaped as real ones, about made-up members.

Each sample is built by the builder of its type (:mod:`workers.notify.events`), so its
payload is the real one's; only its id (``<type>:test-<random>``) and ``data.test`` (true)
tell it apart.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from schemas.events import EventType
from schemas.messages import Event, MembershipChange, MemberState
from workers.notify.events import (
    decided_event,
    execution_event,
    held_event,
    member_event,
    released_event,
)
from workers.store import ExecutionRow, RecoveryRow, TakeoverRow

__all__ = ["sample_event"]


def sample_event(kind: str, now_ms: int) -> Event:
    """A sample event of type ``kind`` (an :class:`EventType` value) for ``qwc
    notifications test``: shaped as a real one, about a made-up member, with the id
    ``<kind>:test-<random>`` and ``data.test`` true. Raises ValueError for another kind."""
    event = _sample(EventType(kind), now_ms)
    sample_id = f"{kind}:test-{uuidlib.uuid4().hex[:12]}"
    return event.model_copy(update={"id": sample_id, "data": {**event.data, "test": True}})


_SAMPLE_MEMBER = "00000000-0000-4000-8000-000000000001"
_SAMPLE_OTHER = "00000000-0000-4000-8000-000000000002"


def _sample(kind: EventType, now_ms: int) -> Event:
    family, _, what = kind.value.partition(".")
    names = {_SAMPLE_MEMBER: "example-member", _SAMPLE_OTHER: "example-other"}
    event: Event | None = None
    if family == "member":
        to = MemberState(what)
        before = MemberState.DEAD if to is MemberState.ACTIVE else MemberState.ACTIVE
        change = MembershipChange(
            uuid=_SAMPLE_MEMBER,
            name=names[_SAMPLE_MEMBER],
            from_state=before,
            to_state=to,
            at_ms=now_ms,
            last_seen_ms=now_ms - 1000,
            reason="sample",
        )
        event = member_event(change)
    elif what == "held":
        event = held_event(
            family,
            proposal_id="sample",
            dead_uuid=_SAMPLE_MEMBER,
            reason="sample",
            at_ms=now_ms,
            name=names[_SAMPLE_MEMBER],
        )
    elif kind is EventType.TAKEOVER_RELEASED:
        event = released_event(now_ms, {"sample": "sample"})
    elif family in ("takeover", "recovery"):
        event = decided_event(family, _sample_row(family, what, now_ms), names)
    elif family == "execution":
        event = _sample_execution(kind, now_ms)
    return event or Event(id=f"{kind}:sample", kind=kind, at_ms=now_ms)


def _sample_row(family: str, outcome: str, now_ms: int) -> TakeoverRow | RecoveryRow:
    common: dict[str, Any] = {
        "id": 0,
        "proposal_id": "sample",
        "dead_uuid": _SAMPLE_MEMBER,
        "policy": "any",
        "proposed_ms": now_ms - 2000,
        "due_ms": now_ms - 1000,
        "decided_ms": now_ms,
        "outcome": outcome,
        "detail": "sample",
    }
    if family == "takeover":
        return TakeoverRow(**common, jobs_moved=3, destinations={_SAMPLE_OTHER: 3})
    retry = {
        "execution": "sample-1",
        "job": "sample-job",
        "from": _SAMPLE_MEMBER,
        "to": _SAMPLE_OTHER,
        "retry_execution": "sample-2",
        "attempt": 2,
        "not_before_ms": now_ms,
    }
    return RecoveryRow(**common, executions_marked=1, retries=(retry,))


def _sample_execution(kind: EventType, now_ms: int) -> Event | None:
    status = {
        EventType.EXECUTION_STARTED: "running",
        EventType.EXECUTION_SUCCEEDED: "succeeded",
        EventType.EXECUTION_TIMED_OUT: "timedout",
    }.get(kind, "failed")
    ended = kind is not EventType.EXECUTION_STARTED
    execution = ExecutionRow(
        id="sample-execution",
        job_id="sample-job",
        member_uuid=_SAMPLE_MEMBER,
        status=status,
        attempt=1,
        retry_of=None,
        trigger="schedule",
        fire_ms=now_ms - 1000,
        started_ms=now_ms - 900,
        ended_ms=now_ms if ended else None,
        exit_code={"succeeded": 0, "failed": 1}.get(status) if ended else None,
        output="sample output\n" if ended else None,
        reason="timeout 30 s" if status == "timedout" else None,
        owner_epoch=None,
        created_ms=now_ms - 1000,
        rq_job_id=None,
        queued_ms=None,
    )
    retrying = kind is EventType.EXECUTION_RETRYABLE_FAILURE
    return execution_event(
        execution,
        job=("sample", "", "example-job"),
        member_name="example-member",
        retrying=retrying,
        at_ms=now_ms,
    )
