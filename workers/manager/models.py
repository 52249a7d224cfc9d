"""The shapes of the API, for its OpenAPI document and the validation of what comes in.

Answers are built by the functions the CLI uses (``member_rows``, ``job_json``,
``execution_json``, ``takeover_json``, ``manual_takeover``, …); these models describe
them (FastAPI serialises list answers through them, so a field missing here is dropped:
``tests/test_manager_api.py`` compares the API with those functions). The compatible
takeover answer and the takeover / run / abort answers are returned as built.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from schemas.messages import canonical_uuid
from schemas.tables import CONCURRENCY_POLICIES, EXECUTION_STATUSES, MISFIRE_POLICIES, NAME_LEN

__all__ = [
    "AbortOutcome",
    "AbortRequest",
    "CompatJob",
    "Execution",
    "ExecutionDetail",
    "ExecutionStatus",
    "Guard",
    "Id",
    "Issued",
    "Job",
    "Member",
    "MemberId",
    "Recovery",
    "Released",
    "RunRequest",
    "Takeover",
    "TakeoverAnswer",
    "TakeoverRequest",
    "Text",
]

MAX_EXPIRES_S = 30 * 86400.0
MAX_JOBS_PER_REQUEST = 1000


def _utf8(value: str) -> str:
    """Refuse lone surrogates (JSON can escape them): no database driver can encode them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid text (a lone surrogate)") from None
    return value


# No NUL (PostgreSQL text refuses it), no control characters, valid UTF-8 in names and ids.
Text = Annotated[
    str,
    StringConstraints(max_length=NAME_LEN, pattern=r"^[^\x00-\x1f]*$"),
    AfterValidator(_utf8),
]
Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f/]+$"),
    AfterValidator(_utf8),
]


def _member_uuid(value: str) -> str:
    try:
        return canonical_uuid(value)
    except ValueError:
        raise ValueError(f"not a UUID: {value!r}") from None


MemberId = Annotated[
    str,
    AfterValidator(_member_uuid),
    Field(json_schema_extra={"format": "uuid"}, min_length=32, max_length=45),
]
ExecutionStatus = Literal[EXECUTION_STATUSES]  # type: ignore[valid-type]


class Member(BaseModel):
    """A member as ``qwc members --json`` shows it (view merged with the store)."""

    uuid: str
    name: str
    state: str = Field(description="active, inactive, dead, or unknown (never heard)")
    age_s: float | None = Field(description="age of the last heartbeat, Redis clock")
    last_seen: str | None = Field(description="last heartbeat, ISO 8601 UTC")
    last_seen_ms: int | None
    jobs_owned: int
    tags: list[str]
    passive: bool
    running: int = Field(description="executions running on it, from its last heartbeat")
    executions_running: int = Field(description="executions running on it, from the store")
    executions_waiting: int = Field(
        description="executions due on it and not started yet (waiting for a slot, or not "
        "even queued), from the store"
    )


class Job(BaseModel):
    """A job as ``qwc jobs list --json`` shows it."""

    id: str
    name: str
    project: str
    group: str
    command: list[str] = Field(description="argv of a command job; [] for other executors")
    executor: dict[str, Any] = Field(
        description="what runs: kind (command, shell, http, python) and its parameters; "
        "credentials in HTTP headers and URLs shown as ***"
    )
    timeout_s: float | None = Field(description="a run is ended after this; null: never")
    concurrency: Literal[CONCURRENCY_POLICIES] = Field(  # type: ignore[valid-type]
        description="a run due while one runs: allow (overlap), forbid (skipped), replace"
    )
    schedule: str | None
    time_zone: str | None = Field(
        description="IANA zone its schedule is read in; null: qwcontrol.scheduler.timeZone"
    )
    enabled: bool = Field(description="fired by its schedule: both flags below are on")
    schedule_enabled: bool = Field(description="Rundeck's scheduleEnabled")
    execution_enabled: bool = Field(
        description="Rundeck's executionEnabled: false, it is neither fired nor run"
    )
    misfire: Literal[MISFIRE_POLICIES] = Field(  # type: ignore[valid-type]
        description="fire times missed: skip, or fire_once (one catch-up execution)"
    )
    misfire_grace_s: float | None = Field(description="how late a time may still run; null: 60")
    description: str
    notify: dict[str, list[str]] = Field(
        description="the job's webhooks: trigger (onstart, onsuccess, onfailure, "
        "onretryablefailure, ontimeout) -> URLs, shown redacted (scheme, host, port)"
    )
    owner_uuid: str
    owner_epoch: int
    retry_count: int
    retry_delay_s: float
    next_fire_ms: int | None
    next_fire: str | None
    last_fire_ms: int | None
    last_fire: str | None
    missed_fires: int = Field(
        description="fire times that never ran: too late for the misfire grace, or left "
        "by a previous owner with misfire skip (counted when the next fire is claimed)"
    )
    modified_by: str
    modified_ms: int
    created_ms: int


class Execution(BaseModel):
    """An execution as ``qwc executions --json`` shows it."""

    id: str
    job_id: str
    member_uuid: str
    status: str
    reason: str | None = Field(description="why it was skipped, aborted, timed out, …")
    trigger: str
    missed_ms: list[int] | None = Field(
        description="trigger catchup: the fire times it stands for (epoch ms)"
    )
    attempt: int
    retry_of: str | None
    fire_ms: int
    fire_time: str | None
    owner_epoch: int | None
    created_ms: int
    started_ms: int | None
    started: str | None
    ended_ms: int | None
    ended: str | None
    exit_code: int | None
    rq_job_id: str | None


class ExecutionDetail(Execution):
    """One execution with its output, as ``qwc executions show --json`` shows it."""

    output: str | None = Field(
        description="what it printed (stdout and stderr; for HTTP the status line and "
        "body), up to qwcontrol.executions.output.maxBytes: head and tail when cut"
    )


class Takeover(BaseModel):
    """A takeover proposal and its outcome, as ``qwc takeovers --json`` shows it."""

    proposal_id: str
    dead_uuid: str
    policy: str
    proposed_at: str | None
    proposed_ms: int
    due_at: str | None
    due_ms: int
    decided_at: str | None
    decided_ms: int | None
    outcome: str | None
    jobs_moved: int
    destinations: dict[str, int]
    detail: str


class Recovery(BaseModel):
    """A recovery proposal and its outcome, as ``qwc recoveries --json`` shows it."""

    proposal_id: str
    dead_uuid: str
    policy: str
    proposed_at: str | None
    due_at: str | None
    decided_at: str | None
    outcome: str | None
    executions_marked: int
    retried: int
    retries: list[dict[str, Any]]
    detail: str


class Guard(BaseModel):
    """The mass-failure guard: held proposals (id -> why) and its last release."""

    held: dict[str, str]
    released_at: str | None
    released_ms: int | None


class Released(BaseModel):
    """What a release did: when, and how many held proposals will proceed."""

    released_at: str | None
    released_ms: int
    held: int


class TakeoverRequest(BaseModel):
    """A manual takeover: the jobs of ``from`` (or of every member: ``all``) to ``to``
    (None: spread over the active, non-passive members, fewest-owned first)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_uuid: MemberId | None = Field(None, alias="from")
    all: bool = False
    to_uuid: MemberId | None = Field(None, alias="to")
    project: Text | None = None
    jobs: list[Id] = Field(default_factory=list, max_length=MAX_JOBS_PER_REQUEST)

    @model_validator(mode="after")
    def _one_source(self) -> TakeoverRequest:
        if (self.from_uuid is None) == (not self.all):
            raise ValueError("give exactly one of from (a member uuid) or all (true)")
        return self


class _Server(BaseModel):
    uuid: str | None = None
    all: bool | None = None


class _Self(BaseModel):
    server: _Server


class _MovedJob(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    previous_owner: str | None = Field(None, alias="previous-owner")


class _Jobs(BaseModel):
    total: int
    successful: list[_MovedJob]
    failed: list[_MovedJob]


class _Schedule(BaseModel):
    server: _Server
    project: str | None = None
    jobs: _Jobs


class TakeoverAnswer(BaseModel):
    """The answer of a takeover, in the shape of ``PUT /api/14/scheduler/takeover``
    (``previous-owner`` from API version 17 on the compatible call; always here)."""

    model_config = ConfigDict(populate_by_name=True)

    success: bool
    message: str
    self_: _Self = Field(alias="self")
    takeoverSchedule: _Schedule


class RunRequest(BaseModel):
    """Run a job now on ``on`` (None: the member ``remoteExecution.policy`` picks)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    on_uuid: MemberId | None = Field(None, alias="on")
    expires_s: float | None = Field(None, gt=0, le=MAX_EXPIRES_S, allow_inf_nan=False)


class AbortRequest(BaseModel):
    """Abort options: seconds the member has to process the abort command."""

    model_config = ConfigDict(extra="forbid")

    expires_s: float | None = Field(None, gt=0, le=MAX_EXPIRES_S, allow_inf_nan=False)


class Issued(BaseModel):
    """An execute command issued, as ``qwc run --json`` prints it."""

    command_id: str
    action: str
    target_uuid: str
    reason: str
    job_id: str | None
    execution_id: str | None
    issued_at: str | None
    issued_at_ms: int
    expires_at: str | None
    expires_at_ms: int
    issued_by: str


class AbortOutcome(BaseModel):
    """What an abort did, as ``qwc abort --json`` prints it: ``sent``, ``applied``,
    ``cancelled`` or ``ended`` (nothing done: answered with 409)."""

    outcome: str
    execution_id: str
    member_uuid: str | None
    status: str | None
    command_id: str | None
    detail: str


class CompatJob(BaseModel):
    """A job as the product this replaces lists scheduled jobs."""

    id: str
    name: str
    group: str | None
    project: str
    description: str
    scheduled: bool
    scheduleEnabled: bool
    enabled: bool
    serverNodeUUID: str
    serverOwner: bool


class JobCreated(Job):
    """A job created through the API, and why its owner is the owner."""

    owner_reason: str = Field(
        description="named (as/owner in the body), qwcontrol.server.uuid (the manager's "
        "member), or the active member owning the fewest jobs"
    )


class JobDeleted(BaseModel):
    """What deleting a job did (``qwc jobs delete --json``)."""

    job: Job
    aborted_waiting: list[str] = Field(
        description="its executions that had not started: aborted (reason: job deleted)"
    )
    running: list[str] = Field(description="its running executions: they go on, or see aborts")
    aborts: list[AbortOutcome] = Field(description="with abort=true: each abort's outcome")
