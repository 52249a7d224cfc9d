"""Issuing remote commands (``qwc run``, ``qwc abort``): record first, then publish.

A command is inserted ``pending`` in the store (``commands``) and then appended to its
target member's stream ``{qwc}:commands:<uuid>``. The row is the truth: should the publish
fail after the insert, the member still finds the command in the store at its next pass.
Times are the Redis server's clock (``issued_at_ms``, ``expires_at_ms``), the clock the
member checks expiry against.

Errors::

    CommandRefused (QwcError)          nothing was issued
    ├── BadTarget (ValueError)         the request is wrong: dead or unknown --on member
    └── NoReceiver (LookupError)       no member may receive it under the policy now

An unknown job or execution raises ``schemas.errors.NotFoundError``.
"""

from __future__ import annotations

import getpass
import logging
import socket
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

import redis

from schemas.errors import NotFoundError, QwcError
from schemas.keys import Keys
from schemas.messages import CommandAction, MemberState, RemoteCommand
from schemas.settings import RemoteExecutionPolicy, Settings
from workers.bus.streams import publish, server_time_ms
from workers.commands.decide import choose_member, target_problem
from workers.liveness import view
from workers.liveness.listing import iso_utc
from workers.proposals import candidates_from_view
from workers.store import (
    CommandRow,
    JobRow,
    Store,
    abort_execution,
    find_job,
    finish_command,
    get_execution,
    insert_command,
    list_commands,
)
from workers.store.executions import FINAL_STATUSES

__all__ = [
    "COMMANDS_MAXLEN",
    "DEFAULT_EXPIRES_S",
    "AbortResult",
    "BadTarget",
    "CommandRefused",
    "ExecutionDisabled",
    "Issued",
    "NoReceiver",
    "abort_json",
    "command_message",
    "default_issuer",
    "find_job",
    "issued_json",
    "publish_command",
    "request_abort",
    "request_execute",
]

log = logging.getLogger(__name__)

DEFAULT_EXPIRES_S = 1800.0  # a command not processed within 30 min is recorded expired
COMMANDS_MAXLEN = 10_000  # per member stream, approximate (the store keeps the history)


class CommandRefused(QwcError):
    """No command was issued; the message says why."""


class BadTarget(CommandRefused, ValueError):
    """The named target member cannot receive commands (dead, or unknown to the view)."""


class NoReceiver(CommandRefused, LookupError):
    """No member may receive the remote execution under ``remoteExecution.policy`` now."""


class ExecutionDisabled(CommandRefused, ValueError):
    """The job's executions are disabled (``qwc jobs disable --execution-only``): it cannot
    be run. (The member's fence refuses it too, should the job be disabled meanwhile.)"""


@dataclass(frozen=True)
class Issued:
    """An execute command issued: the message published, the job, and why that member."""

    command: RemoteCommand
    job: JobRow
    reason: str


@dataclass(frozen=True)
class AbortResult:
    """What ``qwc abort`` did.

    ``outcome``: ``sent`` (an abort command to the execution's member), ``applied`` (its
    member is dead or unknown: aborted in the store directly), ``cancelled`` (an execute
    command not processed yet: the execution will never exist), ``ended`` (nothing to do:
    it had ended; ``status`` says how).
    """

    outcome: str
    execution_id: str
    member_uuid: str | None
    status: str | None
    command_id: str | None
    detail: str


def default_issuer() -> str:
    """Who issues commands from this process: ``qwc:<user>@<host>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = "?"
    return f"qwc:{user}@{socket.gethostname()}"


def command_message(row: CommandRow) -> RemoteCommand:
    """The message of a recorded command, for its current target."""
    return RemoteCommand(
        id=row.id,
        action=CommandAction(row.action),
        target_uuid=row.target_uuid,
        job_id=row.job_id,
        execution_id=row.execution_id,
        issued_at_ms=row.issued_ms,
        expires_at_ms=row.expires_ms,
        issued_by=row.issued_by,
    )


def publish_command(client: redis.Redis, keys: Keys, command: RemoteCommand) -> None:
    """Append ``command`` to its target's stream (trimmed to about COMMANDS_MAXLEN)."""
    publish(client, keys.commands(command.target_uuid), command, maxlen=COMMANDS_MAXLEN)


def _record_and_publish(
    client: redis.Redis, store: Store, keys: Keys, command: RemoteCommand
) -> None:
    insert_command(
        store,
        command_id=command.id,
        action=command.action.value,
        target_uuid=command.target_uuid,
        issued_ms=command.issued_at_ms,
        expires_ms=command.expires_at_ms,
        issued_by=command.issued_by,
        job_id=command.job_id,
        execution_id=command.execution_id,
    )
    try:
        publish_command(client, keys, command)
    except redis.RedisError as exc:  # recorded: the member finds it in the store anyway
        log.warning("command %s: recorded, but not published (%s)", command.id, exc)


def request_execute(
    client: redis.Redis,
    store: Store,
    settings: Settings,
    *,
    job_ref: str,
    on_uuid: str | None = None,
    expires_s: float = DEFAULT_EXPIRES_S,
    issued_by: str = "",
) -> Issued:
    """Issue "execute ``job_ref`` now" to ``on_uuid``, or to the member the remote
    execution policy picks. The execution's id is allocated here (the message carries it),
    so it can be aborted, hence cancelled, before the member processed the command.

    Raises NotFoundError (job), ExecutionDisabled, BadTarget (``on_uuid`` dead or unknown),
    NoReceiver.
    """
    keys = Keys(settings.redis_prefix)
    job = find_job(store, job_ref)
    if not job.execution_enabled:
        raise ExecutionDisabled(
            f"job {job.path} (id {job.id}): its executions are disabled; "
            f"`qwc jobs enable {job.id} --execution-only` allows them again"
        )
    command_id = str(uuidlib.uuid4())
    snap = view.read_snapshot(client, keys)
    target, reason = _target(client, keys, settings, snap, job, on_uuid, command_id)
    now_ms = snap.now_ms
    command = RemoteCommand(
        id=command_id,
        action=CommandAction.EXECUTE,
        target_uuid=target,
        job_id=job.id,
        execution_id=str(uuidlib.uuid4()),
        issued_at_ms=now_ms,
        expires_at_ms=now_ms + round(expires_s * 1000),
        issued_by=issued_by,
    )
    _record_and_publish(client, store, keys, command)
    log.info("command %s: execute job %s on %s (%s)", command.id, job.id, target, reason)
    return Issued(command, job, reason)


def _target(
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    snap: view.ViewSnapshot,
    job: JobRow,
    on_uuid: str | None,
    command_id: str,
) -> tuple[str, str]:
    """The member an execute command goes to, and why."""
    if on_uuid is not None:
        state = snap.states.get(on_uuid)
        problem = target_problem(on_uuid, state)
        if problem is not None:
            raise BadTarget(problem)
        late = " (inactive: its heartbeats are late)" if state is MemberState.INACTIVE else ""
        return on_uuid, "named with --on" + late
    turn = 0
    if settings.remote_execution_policy is RemoteExecutionPolicy.ROUND_ROBIN:
        turn = int(client.incr(keys.remote_exec_round_robin))
    choice = choose_member(
        candidates_from_view(snap, {}),
        settings,
        owner_uuid=job.owner_uuid,
        turn=turn,
        seed=command_id,
    )
    if choice.uuid is None:
        raise NoReceiver(choice.reason)
    return choice.uuid, choice.reason


def request_abort(
    client: redis.Redis,
    store: Store,
    settings: Settings,
    *,
    execution_id: str,
    expires_s: float = DEFAULT_EXPIRES_S,
    issued_by: str = "",
) -> AbortResult:
    """Abort execution ``execution_id`` (see :class:`AbortResult` for the outcomes). A
    second abort while one is pending returns the pending one. NotFoundError when neither
    an execution nor an execute command knows that id."""
    keys = Keys(settings.redis_prefix)
    now_ms = server_time_ms(client)
    try:
        execution = get_execution(store, execution_id)
    except NotFoundError:
        cancelled = _cancel_pending_execute(store, execution_id, now_ms, issued_by)
        if cancelled is not None:
            return cancelled
        execution = get_execution(store, execution_id)  # processed meanwhile, or NotFound
    if execution.status in FINAL_STATUSES:
        return _ended(execution_id, execution.member_uuid, execution.status)
    member = execution.member_uuid
    (seen,) = view.read_observations(client, keys, [member])
    if seen.state is None or seen.state is MemberState.DEAD:
        return _apply_directly(store, execution_id, member, seen.state, now_ms)
    for pending in list_commands(store, execution_id=execution_id, statuses=("pending",)):
        if pending.action == CommandAction.ABORT.value:
            detail = f"an abort command is already pending on member {pending.target_uuid}"
            return AbortResult("sent", execution_id, member, execution.status, pending.id, detail)
    command = RemoteCommand(
        id=str(uuidlib.uuid4()),
        action=CommandAction.ABORT,
        target_uuid=member,
        execution_id=execution_id,
        issued_at_ms=now_ms,
        expires_at_ms=now_ms + round(expires_s * 1000),
        issued_by=issued_by,
    )
    _record_and_publish(client, store, keys, command)
    detail = f"abort command sent to member {member}"
    return AbortResult("sent", execution_id, member, execution.status, command.id, detail)


def _cancel_pending_execute(
    store: Store, execution_id: str, now_ms: int, issued_by: str
) -> AbortResult | None:
    """Cancel the pending execute command that would create ``execution_id``; when its
    execute command ended without creating it (expired, failed, cancelled), say so."""
    executes = [
        row
        for row in list_commands(store, execution_id=execution_id, limit=None)
        if row.action == CommandAction.EXECUTE.value
    ]
    by = issued_by or "?"
    for row in executes:
        detail = f"cancelled before it was processed (abort by {by})"
        if row.status == "pending" and finish_command(
            store, row.id, status="cancelled", now_ms=now_ms, by=by, detail=detail
        ):
            return AbortResult("cancelled", execution_id, row.target_uuid, None, row.id, detail)
    for row in executes:
        if row.status in ("expired", "failed", "cancelled"):
            detail = f"never created: its execute command {row.id} is {row.status}"
            detail += f" ({row.detail})" if row.detail else ""
            return AbortResult("ended", execution_id, row.target_uuid, None, row.id, detail)
    return None


def _ended(execution_id: str, member: str, status: str) -> AbortResult:
    detail = f"execution {execution_id} had already ended: {status}"
    return AbortResult("ended", execution_id, member, status, None, detail)


def _apply_directly(
    store: Store,
    execution_id: str,
    member: str,
    state: MemberState | None,
    now_ms: int,
) -> AbortResult:
    """The member processes no commands: abort in the store. Should the member only be cut
    off from Redis (not gone), its watchdog ends the command's process group at its next
    store check (every heartbeat interval)."""
    how = "dead" if state is MemberState.DEAD else "unknown to the liveness view"
    reason = f"aborted in the store by an operator (member {member} {how})"
    before = abort_execution(store, execution_id, now_ms=now_ms, reason=reason)
    if before is None:
        return _ended(execution_id, member, get_execution(store, execution_id).status)
    detail = f"member {member} is {how}: aborted in the store"
    log.info("execution %s: %s", execution_id, detail)
    return AbortResult("applied", execution_id, member, "aborted", None, detail)


def issued_json(issued: Issued) -> dict[str, Any]:
    """What `qwc run --json` prints and the manager answers for an issued command."""
    c = issued.command
    return {
        "command_id": c.id,
        "action": c.action.value,
        "target_uuid": c.target_uuid,
        "reason": issued.reason,
        "job_id": c.job_id,
        "execution_id": c.execution_id,
        "issued_at": iso_utc(c.issued_at_ms),
        "issued_at_ms": c.issued_at_ms,
        "expires_at": iso_utc(c.expires_at_ms),
        "expires_at_ms": c.expires_at_ms,
        "issued_by": c.issued_by,
    }


def abort_json(result: AbortResult) -> dict[str, Any]:
    """What `qwc abort --json` prints and the manager answers for an abort."""
    return {
        "outcome": result.outcome,
        "execution_id": result.execution_id,
        "member_uuid": result.member_uuid,
        "status": result.status,
        "command_id": result.command_id,
        "detail": result.detail,
    }
