"""The record of remote commands (``commands`` table): one row per command id.

A command is inserted ``pending`` before its message is published on the target member's
stream; it reaches a final status once: ``done``, ``expired``, ``failed`` or
``cancelled``. Every change is conditional on ``status = 'pending'`` (and, for the member
that processes it, on still being its target), so a redelivered message or a racing
re-route changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import RowMapping, select

from schemas.errors import NotFoundError
from schemas.tables import COMMAND_ACTIONS, COMMAND_STATUSES, commands
from workers.store._db import Db, reading, writing

__all__ = [
    "CommandRow",
    "finish_command",
    "get_command",
    "insert_command",
    "list_commands",
    "pending_command_targets",
    "reroute_command",
]

log = logging.getLogger(__name__)

_c = commands


@dataclass(frozen=True)
class CommandRow:
    """One ``commands`` row; times are epoch ms."""

    id: str
    action: str
    target_uuid: str
    job_id: str | None
    execution_id: str | None
    issued_ms: int
    expires_ms: int
    issued_by: str
    status: str
    routed: int
    processed_ms: int | None
    processed_by: str | None
    detail: str

    @classmethod
    def from_mapping(cls, row: RowMapping) -> CommandRow:
        return cls(**row)


def insert_command(
    db: Db,
    *,
    command_id: str,
    action: str,
    target_uuid: str,
    issued_ms: int,
    expires_ms: int,
    issued_by: str = "",
    job_id: str | None = None,
    execution_id: str | None = None,
) -> None:
    """Insert a ``pending`` command. Raises ``ValueError`` for an unknown action,
    ``IntegrityError`` for a duplicate id."""
    if action not in COMMAND_ACTIONS:
        raise ValueError(f"unknown command action {action!r}")
    values = {
        "id": command_id,
        "action": action,
        "target_uuid": target_uuid,
        "job_id": job_id,
        "execution_id": execution_id,
        "issued_ms": issued_ms,
        "expires_ms": expires_ms,
        "issued_by": issued_by,
        "status": "pending",
        "routed": 0,
        "detail": "",
    }
    with writing(db) as conn:
        conn.execute(_c.insert().values(values))


def get_command(db: Db, command_id: str) -> CommandRow:
    """The command ``command_id``; ``NotFoundError`` when it does not exist."""
    with reading(db) as conn:
        row = conn.execute(select(_c).where(_c.c.id == command_id)).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"command {command_id} does not exist")
    return CommandRow.from_mapping(row)


def list_commands(
    db: Db,
    *,
    target_uuid: str | None = None,
    statuses: Collection[str] | None = None,
    execution_id: str | None = None,
    limit: int | None = 100,
) -> list[CommandRow]:
    """Commands matching every given filter, newest first."""
    stmt = select(_c).order_by(_c.c.issued_ms.desc(), _c.c.id)
    if target_uuid is not None:
        stmt = stmt.where(_c.c.target_uuid == target_uuid)
    if statuses is not None:
        stmt = stmt.where(_c.c.status.in_(list(statuses)))
    if execution_id is not None:
        stmt = stmt.where(_c.c.execution_id == execution_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with reading(db) as conn:
        return [CommandRow.from_mapping(row) for row in conn.execute(stmt).mappings()]


def pending_command_targets(db: Db) -> set[str]:
    """The members that have ``pending`` commands."""
    stmt = select(_c.c.target_uuid).where(_c.c.status == "pending").distinct()
    with reading(db) as conn:
        return set(conn.execute(stmt).scalars())


def finish_command(
    db: Db,
    command_id: str,
    *,
    status: str,
    now_ms: int,
    by: str,
    detail: str = "",
    target_uuid: str | None = None,
) -> bool:
    """``pending`` -> a final ``status`` (only while ``target_uuid`` is its target, when
    given). False when it was final already or was re-routed elsewhere."""
    if status not in COMMAND_STATUSES or status == "pending":
        raise ValueError(f"{status!r} is not a final command status")
    stmt = _c.update().where(_c.c.id == command_id, _c.c.status == "pending")
    if target_uuid is not None:
        stmt = stmt.where(_c.c.target_uuid == target_uuid)
    stmt = stmt.values(status=status, processed_ms=now_ms, processed_by=by, detail=detail)
    with writing(db) as conn:
        changed: bool = conn.execute(stmt).rowcount == 1
    if changed:
        log.info("command %s: %s by %s: %s", command_id, status, by, detail)
    return changed


def reroute_command(db: Db, command_id: str, *, from_uuid: str, to_uuid: str, detail: str) -> bool:
    """Give a ``pending`` command of ``from_uuid`` to ``to_uuid``. False when it was not
    pending on ``from_uuid`` any more (processed, or re-routed by someone else)."""
    stmt = (
        _c.update()
        .where(_c.c.id == command_id, _c.c.status == "pending", _c.c.target_uuid == from_uuid)
        .values(target_uuid=to_uuid, routed=_c.c.routed + 1, detail=detail)
    )
    with writing(db) as conn:
        changed: bool = conn.execute(stmt).rowcount == 1
    return changed
