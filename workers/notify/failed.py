"""The failed list: deliveries given up, on ``{qwc}:notifications:failed`` (newest last).

``qwc notifications failed``, the manager's ``GET /api/cluster/notifications/failed`` and
its page read it through :func:`list_failed`; ``qwc notifications retry`` takes one entry
with :func:`get_failed` and removes it once delivered (:func:`remove_failed`). Entries that
do not decode are left out of the list (they stay on the stream).
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from schemas.codec import decode_as
from schemas.errors import DecodeError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import FailedNotification
from workers.liveness.listing import iso_utc

__all__ = ["failed_json", "get_failed", "list_failed", "remove_failed"]

_Entry = tuple[bytes, dict[bytes, bytes]]


def failed_json(entry_id: str, failed: FailedNotification) -> dict[str, Any]:
    """One delivery given up, as the CLI and the API show it: the entry id (what ``qwc
    notifications retry`` takes), receiver, event id and type, attempts, first and last
    attempt times (ISO UTC and ``*_ms``), the last error and HTTP status, and the event's
    payload (parsed JSON)."""
    try:
        payload: Any = json.loads(failed.body)
    except ValueError:
        payload = failed.body
    return {
        "id": entry_id,
        "receiver": failed.receiver,
        "event_id": failed.event_id,
        "event_type": failed.event_type,
        "attempts": failed.attempts,
        "first_attempt_at": iso_utc(failed.first_attempt_ms),
        "first_attempt_ms": failed.first_attempt_ms,
        "failed_at": iso_utc(failed.failed_at_ms),
        "failed_at_ms": failed.failed_at_ms,
        "error": failed.error,
        "status": failed.status,
        "payload": payload,
    }


def _decoded(entries: list[_Entry]) -> list[tuple[str, FailedNotification]]:
    out = []
    for raw_id, fields in entries:
        try:
            out.append((raw_id.decode(), decode_as(fields[MESSAGE_FIELD], FailedNotification)))
        except (DecodeError, KeyError):
            continue
    return out


def list_failed(
    client: redis.Redis, keys: Keys, *, limit: int = 100, receiver: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` deliveries given up (of ``receiver`` only, when given; among
    the newest 10,000), newest first. Raises ``redis.RedisError``."""
    count = limit if receiver is None else 10_000
    entries = cast(list[_Entry], client.xrevrange(keys.notifications_failed, count=count))
    found = [
        failed_json(entry_id, failed)
        for entry_id, failed in _decoded(entries)
        if receiver is None or failed.receiver == receiver
    ]
    return found[:limit]


def get_failed(client: redis.Redis, keys: Keys, entry_id: str) -> FailedNotification | None:
    """The delivery given up under ``entry_id`` (None: no such entry, or it does not
    decode). Raises ``redis.RedisError``, and ``redis.ResponseError`` for an id that is not
    a stream id."""
    entries = cast(list[_Entry], client.xrange(keys.notifications_failed, entry_id, entry_id))
    decoded = _decoded(entries)
    return decoded[0][1] if decoded else None


def remove_failed(client: redis.Redis, keys: Keys, entry_id: str) -> bool:
    """Delete ``entry_id`` from the failed list; False when it was not there."""
    return bool(client.xdel(keys.notifications_failed, entry_id))
