"""Which heartbeats the liveness worker believes, before they touch the view.

A heartbeat moves its member's last-seen time, so whoever can add one keeps a member alive
(or invents one). Checked here, in this order, for each batch the worker reads:

1. :func:`not_future`: an entry id more than
   :data:`workers.bus.future.FUTURE_TOLERANCE_MS` ahead of the Redis server's clock was
   not stamped by Redis' own ``XADD *``: it is dead-lettered, and the stream's last id
   and the group's last delivered id are set back, so later heartbeats are not stamped
   after it (:func:`workers.bus.future.dead_letter_future`).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from schemas.keys import Keys
from workers.bus.future import FUTURE_TOLERANCE_MS, dead_letter_future
from workers.bus.streams import Entry, entry_ms

__all__ = ["not_future"]


def not_future(
    r: redis.Redis, keys: Keys, entries: Sequence[Entry], now_ms: int
) -> Sequence[Entry]:
    """``entries`` without those whose ids are more than FUTURE_TOLERANCE_MS ahead of the
    Redis clock ``now_ms`` (server ms, read after the entries). When there are any, the
    heartbeats stream is repaired first: they, and every other entry as far ahead, are
    dead-lettered with the reason, and its ids set back. Redis errors propagate."""
    limit_ms = now_ms + FUTURE_TOLERANCE_MS
    if not any(entry_ms(entry_id) > limit_ms for entry_id, _ in entries):
        return entries
    repair = dead_letter_future(r, keys, keys.heartbeats, now_ms=now_ms)
    return [e for e in entries if entry_ms(e[0]) <= repair.limit_ms]
