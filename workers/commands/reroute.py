"""A dead member's pending commands: re-routed, applied or failed, never silently dropped.

:func:`reroute_commands` takes every command still ``pending`` on the dead member:

- past its expiry: recorded ``expired``;
- ``execute``: given to the member the remote execution policy picks among the others
  (the record's target changes first, conditionally; then the message is published on the
  new member's stream — should that publish be lost, the member finds the command in the
  store at its next pass); ``failed`` with the reason when no member may receive it;
- ``abort``: applied in the store (the execution ``aborted``; its RQ job told to stop,
  should the member's worker still run it) and recorded ``done``.

Every change is conditional on the command being pending on the dead member, so a second
call, or two workers racing, handle each command once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import redis

from schemas.errors import NotFoundError
from schemas.keys import Keys
from schemas.settings import RemoteExecutionPolicy, Settings
from workers.commands.decide import choose_member
from workers.commands.issue import command_message, publish_command
from workers.liveness import view
from workers.proposals import Candidate, candidates_from_view
from workers.store import (
    CommandRow,
    Store,
    abort_execution,
    finish_command,
    get_job,
    list_commands,
    reroute_command,
)

__all__ = ["Rerouted", "reroute_commands"]

log = logging.getLogger(__name__)

BY = "reroute"  # processed_by of what re-routing records


@dataclass(frozen=True)
class Rerouted:
    """What became of one command: ``rerouted`` (to ``to_uuid``), ``failed``, ``applied``
    (an abort done in the store) or ``expired``."""

    command_id: str
    action: str
    outcome: str
    to_uuid: str | None
    detail: str


def reroute_commands(
    client: redis.Redis,
    store: Store,
    keys: Keys,
    settings: Settings,
    dead_uuid: str,
    now_ms: int,
) -> list[Rerouted]:
    """Handle every command pending on ``dead_uuid`` (see the module docstring) at Redis
    server time ``now_ms``. Returns what this call changed (a racing call's share is left
    out). Transient Redis/SQL errors propagate: a later call takes what is left."""
    rows = list_commands(store, target_uuid=dead_uuid, statuses=("pending",), limit=None)
    if not rows:
        return []
    members = candidates_from_view(view.read_snapshot(client, keys), {})
    out = []
    for row in reversed(rows):  # oldest first
        done = _one(client, store, keys, settings, row, members, now_ms)
        if done is not None:
            log.info(
                "command %s (%s) of dead member %s: %s %s",
                row.id,
                row.action,
                dead_uuid,
                done.outcome,
                done.detail,
            )
            out.append(done)
    return out


def _one(
    client: redis.Redis,
    store: Store,
    keys: Keys,
    settings: Settings,
    row: CommandRow,
    members: list[Candidate],
    now_ms: int,
) -> Rerouted | None:
    if row.expires_ms <= now_ms:
        return _finish(store, row, "expired", now_ms, "expired before its member processed it")
    if row.action == "abort":
        return _apply_abort(store, row, now_ms)
    return _reroute_execute(client, store, keys, settings, row, members, now_ms)


def _finish(
    store: Store, row: CommandRow, status: str, now_ms: int, detail: str
) -> Rerouted | None:
    changed = finish_command(
        store,
        row.id,
        status=status,
        now_ms=now_ms,
        by=BY,
        detail=detail,
        target_uuid=row.target_uuid,
    )
    outcome = "applied" if status == "done" else status
    return Rerouted(row.id, row.action, outcome, None, detail) if changed else None


def _apply_abort(store: Store, row: CommandRow, now_ms: int) -> Rerouted | None:
    if row.execution_id is None:
        return _finish(store, row, "failed", now_ms, "abort command without an execution")
    try:
        reason = f"aborted by command {row.id} of {row.issued_by} (member dead)"
        before = abort_execution(store, row.execution_id, now_ms=now_ms, reason=reason)
    except NotFoundError:
        return _finish(store, row, "failed", now_ms, f"execution {row.execution_id} does not exist")
    if before is None:
        detail = "member dead; the execution had already ended"
    else:
        detail = "member dead: aborted in the store"
    return _finish(store, row, "done", now_ms, detail)


def _reroute_execute(
    client: redis.Redis,
    store: Store,
    keys: Keys,
    settings: Settings,
    row: CommandRow,
    members: list[Candidate],
    now_ms: int,
) -> Rerouted | None:
    try:
        owner = get_job(store, row.job_id).owner_uuid if row.job_id else None
    except NotFoundError:
        return _finish(store, row, "failed", now_ms, f"job {row.job_id} does not exist")
    turn = 0
    if settings.remote_execution_policy is RemoteExecutionPolicy.ROUND_ROBIN:
        turn = int(client.incr(keys.remote_exec_round_robin))
    choice = choose_member(
        members, settings, owner_uuid=owner, turn=turn, seed=row.id, exclude=(row.target_uuid,)
    )
    dead = row.target_uuid
    if choice.uuid is None:
        return _finish(store, row, "failed", now_ms, f"member {dead} dead; {choice.reason}")
    detail = f"re-routed from dead member {dead} ({choice.reason})"
    if not reroute_command(store, row.id, from_uuid=dead, to_uuid=choice.uuid, detail=detail):
        return None
    try:
        publish_command(client, keys, command_message(replace(row, target_uuid=choice.uuid)))
    except redis.RedisError as exc:  # re-routed in the store: the member finds it there
        log.warning("command %s: re-routed, but not published (%s)", row.id, exc)
    return Rerouted(row.id, row.action, "rerouted", choice.uuid, detail)
