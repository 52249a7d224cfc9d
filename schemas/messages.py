"""Messages on the cluster's streams: frozen, versioned pydantic models.

Each model has ``v`` (its schema version) and a type tag ``t`` (class variable ``TYPE``).
Encode and decode them only through :mod:`schemas.codec`. Times are milliseconds: fields
ending in ``_ms`` taken from the Redis server clock unless the docstring says otherwise.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "MEMBER_NAME_MAX_CHARS",
    "MESSAGE_TYPES",
    "CommandAction",
    "Event",
    "FailedNotification",
    "Heartbeat",
    "MemberState",
    "MemberUuid",
    "MembershipChange",
    "Message",
    "RecoveryProposal",
    "RemoteCommand",
    "TakeoverProposal",
    "canonical_uuid",
]


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: str) -> str:
    """Return ``value`` as a lower-case hyphenated UUID; ValueError if it is not one."""
    if _CANONICAL_UUID.fullmatch(value):  # the common case, without building a UUID
        return value
    return str(uuid.UUID(value))


MemberUuid = Annotated[str, AfterValidator(canonical_uuid)]
MEMBER_NAME_MAX_CHARS = 200  # a heartbeat's name; qwcontrol.server.name is held to it
NonNegativeMs = Annotated[int, Field(ge=0)]


class MemberState(StrEnum):
    """A member's state in the liveness view, by the age of its last heartbeat."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    DEAD = "dead"


class CommandAction(StrEnum):
    EXECUTE = "execute"
    ABORT = "abort"


class Message(BaseModel):
    """Base of every stream message: frozen, no unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)
    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1


class Heartbeat(Message):
    """A member says it is alive. Its time is the stream entry id (Redis clock), not ``sent_at_ms``.

    ``sent_at_ms`` is the member's own clock, kept for diagnosis only.
    """

    TYPE: ClassVar[str] = "heartbeat"
    v: Literal[1] = 1
    uuid: MemberUuid
    name: str = Field(min_length=1, max_length=MEMBER_NAME_MAX_CHARS)
    seq: NonNegativeMs
    started_at_ms: NonNegativeMs
    sent_at_ms: NonNegativeMs
    tags: tuple[str, ...] = ()
    running: tuple[str, ...] = ()  # execution ids running on the member
    passive: bool = False
    version: str = ""


class MembershipChange(Message):
    """A member's state changed in the view; emitted exactly once per change."""

    TYPE: ClassVar[str] = "membership"
    v: Literal[1] = 1
    uuid: MemberUuid
    name: str = ""
    from_state: MemberState | None
    to_state: MemberState
    at_ms: NonNegativeMs
    last_seen_ms: NonNegativeMs
    reason: str = ""


class _Proposal(Message):
    """A proposal about a dead member, due at ``due_at_ms`` (Redis server ms)."""

    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=64)
    dead_uuid: MemberUuid
    policy: str
    proposed_at_ms: NonNegativeMs
    due_at_ms: NonNegativeMs
    last_seen_ms: NonNegativeMs


class TakeoverProposal(_Proposal):
    """Proposal to move a dead member's scheduled jobs to live members."""

    TYPE: ClassVar[str] = "takeover"


class RecoveryProposal(_Proposal):
    """Proposal to recover a dead member's running executions."""

    TYPE: ClassVar[str] = "recovery"


class RemoteCommand(Message):
    """Execute a job or abort an execution on ``target_uuid``; ignored after ``expires_at_ms``."""

    TYPE: ClassVar[str] = "command"
    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=64)
    action: CommandAction
    target_uuid: MemberUuid
    job_id: str | None = None
    execution_id: str | None = None
    issued_at_ms: NonNegativeMs
    expires_at_ms: NonNegativeMs
    issued_by: str = ""


class ViewRestart(Message):
    """The liveness view restarted its grace rule because it is now read on another Redis
    server (``run_id``): a failover or a restart. Its time is its stream entry id."""

    TYPE: ClassVar[str] = "view-restart"
    v: Literal[1] = 1
    run_id: str = ""
    reason: str = "server"


class Event(Message):
    """Something the cluster tells the outside (docs/notifications.md), on ``{qwc}:events``.

    ``id`` is deterministic — the same happening emitted again (after a crash) has the same
    id — and is the idempotency key receivers dedupe on. ``kind`` is a
    :class:`schemas.events.EventType` value (a plain string here, so a newer type does not
    make an older reader dead-letter the event). ``at_ms``: when it happened, epoch ms.
    ``data`` is the type's payload, JSON values only. ``hook_urls``: the per-job webhooks
    this event also goes to (set by the member for ``execution.*`` events of jobs with
    hooks; never part of the payload).
    """

    TYPE: ClassVar[str] = "event"
    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=300)
    kind: str = Field(min_length=1, max_length=100)
    at_ms: NonNegativeMs
    data: dict[str, JsonValue] = Field(default_factory=dict)
    hook_urls: tuple[str, ...] = ()


class FailedNotification(Message):
    """A delivery given up (``{qwc}:notifications:failed``): the receiver, the event, how
    many attempts from ``first_attempt_ms`` to ``failed_at_ms`` (epoch ms), the last
    ``error`` and HTTP ``status`` (None: no answer), and the JSON ``body`` that was sent."""

    TYPE: ClassVar[str] = "notification-failed"
    v: Literal[1] = 1
    receiver: str = Field(min_length=1)
    event_id: str = Field(min_length=1)
    event_type: str
    attempts: int = Field(ge=1)
    first_attempt_ms: NonNegativeMs
    failed_at_ms: NonNegativeMs
    error: str
    status: int | None = None
    body: str


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Heartbeat,
        MembershipChange,
        TakeoverProposal,
        RecoveryProposal,
        RemoteCommand,
        ViewRestart,
        Event,
        FailedNotification,
    )
}
