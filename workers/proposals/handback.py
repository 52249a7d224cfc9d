"""Handing claimed work back when a worker stops, so another replica takes it at once.

A takeover or recovery worker holds each proposal unacknowledged until it is due. When the
worker stops (SIGTERM), those entries stay pending under its consumer name; the other
replicas reclaim a pending entry only once it has been idle longer than the delay plus a
margin (they cannot tell a stopped replica from a slow one). :func:`hand_back` marks the
entries as idle for a very long time (``XCLAIM … IDLE``, still under the stopping
consumer, delivery count unchanged), so another replica's next reclaim, at most a
heartbeat interval later, takes them. Nothing is acknowledged or lost: if no other replica
runs, the entries wait for the next worker to start.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import redis

__all__ = ["HANDED_BACK_IDLE_MS", "hand_back"]

log = logging.getLogger(__name__)

# Longer than any reclaim threshold (delay + margin); far less than the epoch (Redis
# computes the delivery time as now - IDLE).
HANDED_BACK_IDLE_MS = 365 * 24 * 3600 * 1000


def hand_back(
    client: redis.Redis, stream: str, group: str, consumer: str, entry_ids: Collection[bytes]
) -> int:
    """Make ``entry_ids`` (pending for ``consumer`` in ``group``) reclaimable by any other
    consumer now; returns how many were handed back. Never raises: a Redis error (the
    reason the worker stops, maybe) is logged, and the entries are reclaimed later the
    usual way, once idle longer than the delay."""
    if not entry_ids:
        return 0
    try:
        claimed = client.xclaim(
            stream,
            group,
            consumer,
            0,
            list(entry_ids),
            idle=HANDED_BACK_IDLE_MS,
            justid=True,
        )
    except redis.RedisError as exc:
        log.warning("%s: could not hand back %s entries: %s", consumer, len(entry_ids), exc)
        return 0
    log.info("%s: handed back %s pending entries of %s", consumer, len(claimed), stream)
    return len(claimed)
