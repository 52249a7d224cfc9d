"""Cluster members as the liveness worker records them, with the jobs each one owns.

``record_member_state`` is an upsert that never goes back in time: a write whose
``changed_ms`` is older than the stored ``state_changed_ms`` is ignored, ``last_seen_ms``
only grows, and ``state_changed_ms`` moves only when the state really changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, case, func, select, union
from sqlalchemy.dialects import postgresql, sqlite

from schemas.errors import NotFoundError
from schemas.tables import MEMBER_STATES, cluster_members, scheduled_jobs
from workers.store._db import Db, reading, writing
from workers.store.jobs import live

__all__ = [
    "MemberRow",
    "get_member",
    "known_member_uuids",
    "list_members",
    "record_member_state",
]

log = logging.getLogger(__name__)

_t = cluster_members


@dataclass(frozen=True)
class MemberRow:
    """One ``cluster_members`` row plus ``jobs_owned``; times are epoch ms.

    ``first_seen_ms`` is when the member was first recorded; ``last_seen_ms`` its last
    heartbeat, None when it was never heard (an orphaned job owner).
    """

    uuid: str
    name: str
    tags: tuple[str, ...]
    state: str
    passive: bool
    version: str
    first_seen_ms: int
    last_seen_ms: int | None
    state_changed_ms: int
    jobs_owned: int = 0

    @classmethod
    def from_mapping(cls, row: RowMapping) -> MemberRow:
        """Build from a row of ``cluster_members`` (all columns, optionally ``jobs_owned``)."""
        values = dict(row)
        values["tags"] = tuple(values["tags"])
        values["passive"] = bool(values["passive"])
        return cls(**values)


def record_member_state(
    db: Db,
    *,
    uuid: str,
    name: str,
    state: str,
    last_seen_ms: int | None,
    changed_ms: int,
    tags: Sequence[str] | None = None,
    passive: bool | None = None,
    version: str = "",
) -> bool:
    """Insert or update member ``uuid`` (times in epoch ms of the Redis server).

    ``last_seen_ms`` is its last heartbeat, None when it was never heard (an orphaned job
    owner). A new member gets ``first_seen_ms = last_seen_ms`` (or ``changed_ms``). On
    update, an empty ``name`` or ``version`` and a None ``last_seen_ms``, ``tags`` or
    ``passive`` keep the stored value. Returns False when the write was older than the
    stored state change and was ignored. Raises ``ValueError`` for an unknown state.
    """
    if state not in MEMBER_STATES:
        raise ValueError(f"unknown member state {state!r}")
    values = {
        "uuid": uuid,
        "name": name,
        "tags": list(tags or ()),
        "state": state,
        "passive": bool(passive),
        "version": version,
        "first_seen_ms": changed_ms if last_seen_ms is None else last_seen_ms,
        "last_seen_ms": last_seen_ms,
        "state_changed_ms": changed_ms,
    }
    optional: dict[str, object] = {"name": name or None, "version": version or None}
    optional |= {"tags": tags, "passive": passive, "last_seen_ms": last_seen_ms}
    given = {key for key, value in optional.items() if value is not None}
    with writing(db) as conn:
        insert = _dialect_insert(conn.dialect.name, values)
        stmt = insert.on_conflict_do_update(
            index_elements=[_t.c.uuid],
            set_=_updates(insert.excluded, given),
            where=insert.excluded.state_changed_ms >= _t.c.state_changed_ms,
        )
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        applied = conn.execute(stmt.returning(_t.c.uuid)).first() is not None
    if not applied:
        log.info("member %s: stale state %s at %s ignored", uuid, state, changed_ms)
    return applied


def _updates(new: Any, given: set[str]) -> dict[str, Any]:
    """SET clause of the upsert: ``new`` is the EXCLUDED row, ``given`` the fields to take."""
    updates: dict[str, Any] = {
        "state": new.state,
        # the change time moves only when the state really changes
        "state_changed_ms": case(
            (_t.c.state == new.state, _t.c.state_changed_ms), else_=new.state_changed_ms
        ),
    }
    updates |= {key: new[key] for key in given & {"name", "version", "tags", "passive"}}
    if "last_seen_ms" in given:  # only grows
        updates["last_seen_ms"] = case(
            (
                _t.c.last_seen_ms.is_(None) | (new.last_seen_ms > _t.c.last_seen_ms),
                new.last_seen_ms,
            ),
            else_=_t.c.last_seen_ms,
        )
    return updates


def _dialect_insert(dialect: str, values: dict[str, Any]) -> Any:
    """An INSERT with ``on_conflict_do_update`` for ``dialect`` (sqlite or postgresql)."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(_t).values(values)


def list_members(db: Db) -> list[MemberRow]:
    """Every recorded member with the number of jobs it owns, by name then uuid."""
    owned = (
        select(scheduled_jobs.c.owner_uuid, func.count().label("jobs_owned"))
        .where(live())
        .group_by(scheduled_jobs.c.owner_uuid)
        .subquery()
    )
    stmt = (
        select(_t, func.coalesce(owned.c.jobs_owned, 0).label("jobs_owned"))
        .outerjoin(owned, owned.c.owner_uuid == _t.c.uuid)
        .order_by(_t.c.name, _t.c.uuid)
    )
    with reading(db) as conn:
        return [MemberRow.from_mapping(row) for row in conn.execute(stmt).mappings()]


def get_member(db: Db, uuid: str) -> MemberRow:
    """Member ``uuid`` with its ``jobs_owned``. Raises ``NotFoundError`` when unknown."""
    owned = (
        select(func.count()).where(scheduled_jobs.c.owner_uuid == uuid, live()).scalar_subquery()
    )
    stmt = select(_t, owned.label("jobs_owned")).where(_t.c.uuid == uuid)
    with reading(db) as conn:
        row = conn.execute(stmt).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"member {uuid} is not known")
    return MemberRow.from_mapping(row)


def known_member_uuids(db: Db) -> set[str]:
    """Uuids of recorded members and of every live job's owner, recorded or not (orphaned
    owners)."""
    stmt = union(select(_t.c.uuid), select(scheduled_jobs.c.owner_uuid).where(live()))
    with reading(db) as conn:
        return set(conn.execute(stmt).scalars())
