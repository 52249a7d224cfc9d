"""Pure: merge the Redis view and the store into the rows ``qwc members`` shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from schemas.messages import Heartbeat

__all__ = ["StoreMember", "iso_utc", "member_rows"]


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
) -> list[dict[str, Any]]:
    """One row per member known to the view or the store, sorted by name then uuid.

    The view wins where both know a member; ``age_s`` is the Redis-clock age of the last
    heartbeat, None when the member was never heard by this view.
    """
    stored = {m.uuid: m for m in store_members}
    uuids = set(seen_ms) | set(states) | set(stored) | set(jobs_owned)
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
            }
        )
    rows.sort(key=lambda r: (r["name"], r["uuid"]))
    return rows
