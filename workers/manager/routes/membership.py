"""``/api/cluster/membership``: the members' state changes, newest first, as the liveness
worker wrote them on the membership stream (the web page's timeline reads it).

``change_json`` is the pure shape of one change; ``membership_history`` is the thin read
around it: ``XREVRANGE`` in pages of ``PAGE`` entries, looking at no more than
``SCAN_MAX`` of the newest entries when it filters on a member (the stream is capped at
``MEMBERSHIP_MAXLEN``, so an unfiltered read never pages far).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import redis
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from schemas.codec import decode_as
from schemas.errors import DecodeError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import MembershipChange
from workers.liveness.listing import iso_utc
from workers.manager.auth import require_read
from workers.manager.deps import Res
from workers.manager.models import MemberId

__all__ = ["MembershipEvent", "change_json", "membership_history", "router"]

PAGE = 500
SCAN_MAX = 20_000

router = APIRouter(prefix="/api/cluster", tags=["members"], dependencies=[Depends(require_read)])


class MembershipEvent(BaseModel):
    """One change of a member's state in the liveness view."""

    id: str = Field(description="the entry id on the membership stream")
    uuid: str
    name: str
    from_state: str | None = Field(description="None: the member's first heartbeat")
    to_state: str
    at: str | None = Field(description="when the view changed, ISO 8601 UTC (Redis clock)")
    at_ms: int
    last_seen: str | None
    last_seen_ms: int
    reason: str


def change_json(entry_id: str, change: MembershipChange) -> dict[str, Any]:
    """One membership change as the API answers it (times as ISO UTC and ``*_ms``)."""
    return {
        "id": entry_id,
        "uuid": change.uuid,
        "name": change.name,
        "from_state": None if change.from_state is None else change.from_state.value,
        "to_state": change.to_state.value,
        "at": iso_utc(change.at_ms),
        "at_ms": change.at_ms,
        "last_seen": iso_utc(change.last_seen_ms),
        "last_seen_ms": change.last_seen_ms,
        "reason": change.reason,
    }


def membership_history(
    client: redis.Redis, keys: Keys, *, member: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest ``limit`` changes (of ``member`` only, when given), newest first.
    Entries that do not decode are left out. Raises ``redis.RedisError``."""
    out: list[dict[str, Any]] = []
    upper, scanned = "+", 0
    while len(out) < limit and scanned < SCAN_MAX:
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            client.xrevrange(keys.membership, max=upper, min="-", count=PAGE),
        )
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            try:
                change = decode_as(fields[MESSAGE_FIELD], MembershipChange)
            except (DecodeError, KeyError):
                continue
            if member is None or change.uuid == member:
                out.append(change_json(entry_id, change))
        if len(entries) < PAGE:
            break
        scanned += len(entries)
        upper = "(" + entries[-1][0].decode()
    return out[:limit]


@router.get("/membership", response_model=list[MembershipEvent])
def membership(
    res: Res,
    member: Annotated[MemberId | None, Query(description="Only changes of this member.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Members' state changes (``active``, ``inactive``, ``dead``), newest first, from the
    membership stream; with ``member``, among the newest 20,000 changes."""
    return membership_history(res.redis(), res.keys, member=member, limit=limit)
