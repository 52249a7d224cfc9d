"""What a recording holds besides the stream entries: its header and its snapshot.

Both are frozen pydantic models, validated when a recording is read, so a damaged file is
reported field by field instead of failing somewhere in the replay. Times are Redis server
milliseconds (entry ids), or the store's epoch milliseconds for the snapshot's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import MemberState

__all__ = [
    "SMALL_STREAMS",
    "AuditRecord",
    "Block",
    "ExecutionRecord",
    "JobRecord",
    "MemberRecord",
    "PriorState",
    "RecordingHeader",
    "Snapshot",
]

# The streams recorded besides the heartbeats (per-member command streams are named
# "commands:<uuid>"). Their blocks come before the heartbeats' in a file. "view-restarts"
# is recorded whole (before the warm-up too): the last restart before the start is the
# view's start then.
SMALL_STREAMS = ("membership", "takeover", "recovery", "view-restarts")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RecordingHeader(_Record):
    """Where and when a recording was made, and the settings in effect then.

    ``since_ms``..``until_ms`` is the window the timeline and the diff cover; the entries
    start at ``start_ms`` (<= ``since_ms``): the warm-up before ``since`` lets the replay
    know each member's last heartbeat when the window opens. ``settings`` maps the keys of
    ``qwcontrol.clusterMode.*`` to their values as text, as a properties file holds them.
    """

    created_ms: int = Field(ge=0)
    source: Literal["redis", "synthetic"]
    prefix: str
    since_ms: int = Field(ge=0)
    until_ms: int = Field(ge=0)
    start_ms: int = Field(ge=0)
    view_started_ms: int | None = None
    released_ms: int = Field(default=0, ge=0)  # the last `qwc takeover release`, 0: none
    settings: dict[str, str]


class JobRecord(_Record):
    """A scheduled job at record time: enough to tell who owned it when."""

    id: str
    name: str = ""
    owner_uuid: str
    owner_epoch: int = 0
    modified_by: str
    modified_ms: int
    created_ms: int
    retry_count: int = 0
    retry_delay_s: float = 0.0


class ExecutionRecord(_Record):
    """An execution that some heartbeat of the recording listed as running."""

    id: str
    job_id: str
    member_uuid: str
    attempt: int = 1
    retry_of: str | None = None


class MemberRecord(_Record):
    """A member as the store's ``cluster_members`` knew it at record time."""

    uuid: str
    name: str = ""
    state: str
    last_seen_ms: int | None = None


class PriorState(_Record):
    """A member's last membership change before the recording's start: its state then."""

    uuid: str
    name: str = ""
    state: MemberState
    last_seen_ms: int = 0  # 0: never heard
    at_ms: int


class AuditRecord(_Record):
    """A takeover or recovery audit row of the window: what the workers decided.

    ``count`` is the jobs moved (takeover) or the executions marked (recovery);
    ``destinations`` maps member -> jobs moved there (takeover) or retries started there
    (recovery)."""

    proposal_id: str
    dead_uuid: str
    policy: str = ""
    proposed_ms: int
    due_ms: int
    decided_ms: int | None = None
    outcome: str | None = None
    count: int = 0
    destinations: dict[str, int] = Field(default_factory=dict)
    detail: str = ""


class Snapshot(_Record):
    """The store at record time: jobs and their owners (``owners``: jobs per owner), the
    executions heartbeats listed as running, the members, the members' states before the
    start, the members never heard, and the audit rows of the window."""

    jobs: list[JobRecord] = Field(default_factory=list)
    owners: dict[str, int] = Field(default_factory=dict)
    executions: list[ExecutionRecord] = Field(default_factory=list)
    members: list[MemberRecord] = Field(default_factory=list)
    prior: list[PriorState] = Field(default_factory=list)
    # members the store knew that no heartbeat of the recording names and that have no
    # prior state: uuid -> since when a liveness view could know them (ms)
    unheard: dict[str, int] = Field(default_factory=dict)
    takeovers: list[AuditRecord] = Field(default_factory=list)
    recoveries: list[AuditRecord] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Block:
    """Consecutive entries of one stream: ids ``ms[i]-seq[i]`` and raw payloads ``raw[i]``."""

    stream: str
    ms: list[int]
    seq: list[int]
    raw: list[bytes]

    def __len__(self) -> int:
        return len(self.ms)
