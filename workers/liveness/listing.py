"""The member rows ``qwc members`` and the manager's API show: the Redis view merged with
the store.

``member_rows`` is the pure merge; ``collect_member_rows`` is the thin read around it (one
Redis round trip, three SQL reads).

Besides ``running`` (the executions a member reported in its last heartbeat), each row
has ``executions_running`` and ``executions_waiting`` from the store: what runs on the
member now, and what is due there but not started yet — queued behind busy slots, or not
even queued (the member is cut off from Redis, or gone).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import redis

from schemas.keys import Keys
from schemas.messages import Heartbeat
from workers.liveness import view
from workers.store import Backlog, Db, count_backlog, count_jobs_by_owner, list_members

__all__ = ["StoreMember", "collect_member_rows", "iso_utc", "member_rows"]


class StoreMember(Protocol):
    """What the store knows of a member (``workers.store.MemberRow`` fits)."""

    @property
    def uuid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def last_seen_ms(self) -> int | None: ...


def iso_utc(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO 8601 UTC string (None stays None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def member_rows(
    *,
    now_ms: int,
    seen_ms: Mapping[str, int],
    states: Mapping[str, str],
    heartbeats: Mapping[str, Heartbeat],
    store_members: Iterable[StoreMember],
    jobs_owned: Mapping[str, int],
    backlog: Mapping[str, Backlog] | None = None,
) -> list[dict[str, Any]]:
    """One row per member known to the view or the store, sorted by name then uuid.

    The view wins where both know a member; ``age_s`` is the Redis-clock age of the last
    heartbeat, None when the member was never heard by this view.
    """
    stored = {m.uuid: m for m in store_members}
    backlog = backlog or {}
    uuids = set(seen_ms) | set(states) | set(stored) | set(jobs_owned) | set(backlog)
    rows = []
    for uuid in uuids:
        hb, sm = heartbeats.get(uuid), stored.get(uuid)
        last = seen_ms.get(uuid, sm.last_seen_ms if sm else None)
        rows.append(
            {
                "uuid": uuid,
                "name": hb.name if hb else (sm.name if sm else ""),
                "state": states.get(uuid) or (sm.state if sm else "unknown"),
                "age_s": None if last is None else round((now_ms - last) / 1000, 3),
                "last_seen": iso_utc(last),
                "last_seen_ms": last,
                "jobs_owned": jobs_owned.get(uuid, 0),
                "tags": list(hb.tags) if hb else [],
                "passive": hb.passive if hb else False,
                "running": len(hb.running) if hb else 0,
                "executions_running": backlog.get(uuid, Backlog()).running,
                "executions_waiting": backlog.get(uuid, Backlog()).waiting,
            }
        )
    rows.sort(key=lambda r: (r["name"], r["uuid"]))
    return rows


def collect_member_rows(client: redis.Redis, store: Db, keys: Keys) -> list[dict[str, Any]]:
    """Read the view and the store and merge them (see ``member_rows``).

    Raises ``redis.RedisError`` / a SQLAlchemy error when Redis / the store does not answer.
    """
    snap = view.read_snapshot(client, keys)
    return member_rows(
        now_ms=snap.now_ms,
        seen_ms=snap.seen_ms,
        states={u: s.value for u, s in snap.states.items()},
        heartbeats=view.decode_heartbeats(snap.info),
        store_members=list_members(store),
        jobs_owned=count_jobs_by_owner(store),
        backlog=count_backlog(store, now_ms=snap.now_ms),
    )
