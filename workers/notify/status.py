"""Where each receiver stands, for the manager's metrics: deliveries by outcome, events not
delivered yet, and the size of the failed list (read at each scrape, in two round trips).

Undelivered events of a receiver: those read and not acknowledged (being delivered, or
waiting for a retry) plus those not read yet — from ``XINFO GROUPS`` (its ``lag``; where
Redis cannot tell it, Redis 6.2 or after a trim, counted with ``XRANGE``, up to
:data:`COUNT_MAX`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from schemas.keys import Keys, notify_group
from workers.notify.hooks import HOOK_COUNTS

__all__ = ["COUNT_MAX", "OUTCOMES", "NotifyFacts", "ReceiverFacts", "read_notify_facts"]

COUNT_MAX = 1000
OUTCOMES = ("delivered", "retried", "failed")


@dataclass(frozen=True)
class ReceiverFacts:
    """One receiver: deliveries by outcome (``delivered``, ``retried``: a failed attempt
    followed by another, ``failed``: given up) since the counts began, and its undelivered
    events (None: its group does not exist yet)."""

    name: str
    outcomes: dict[str, int]
    undelivered: int | None


@dataclass(frozen=True)
class NotifyFacts:
    """Every configured receiver, the entries of the failed list, and the deliveries to
    the jobs' own webhooks by outcome (all jobs together: one series, whatever the jobs)."""

    receivers: list[ReceiverFacts]
    failed: int
    job_hooks: dict[str, int]


def read_notify_facts(client: redis.Redis, keys: Keys, receivers: Sequence[str]) -> NotifyFacts:
    """The facts of ``receivers`` (names). Raises ``redis.RedisError``."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.notify_counts)
    pipe.xlen(keys.notifications_failed)
    pipe.xinfo_groups(keys.events)
    counts, failed, groups = pipe.execute(raise_on_error=False)
    for reply in (counts, failed):
        if isinstance(reply, Exception):
            raise reply
    by_group = {} if isinstance(groups, Exception) else {_text(g["name"]): g for g in groups}
    undelivered = _undelivered(client, keys, [by_group.get(notify_group(n)) for n in receivers])
    outcomes = {_text(k): int(v) for k, v in cast(dict[bytes, bytes], counts).items()}
    facts = [
        ReceiverFacts(
            name,
            {o: outcomes.get(f"{name}:{o}", 0) for o in OUTCOMES},
            left,
        )
        for name, left in zip(receivers, undelivered, strict=True)
    ]
    hooks = {o: outcomes.get(f"{HOOK_COUNTS}:{o}", 0) for o in OUTCOMES}
    return NotifyFacts(facts, int(failed), hooks)


def _undelivered(
    client: redis.Redis, keys: Keys, groups: list[dict[str, Any] | None]
) -> list[int | None]:
    """Pending + not read yet, per group (None: no group)."""
    unknown = [i for i, g in enumerate(groups) if g is not None and g.get("lag") is None]
    counted: dict[int, int] = {}
    if unknown:
        pipe = client.pipeline(transaction=False)
        for i in unknown:
            after = "(" + _text(cast(dict[str, Any], groups[i])["last-delivered-id"])
            pipe.xrange(keys.events, min=after, max="+", count=COUNT_MAX)
        counted = {i: len(entries) for i, entries in zip(unknown, pipe.execute(), strict=True)}
    return [
        None if g is None else int(g["pending"]) + counted.get(i, int(g.get("lag") or 0))
        for i, g in enumerate(groups)
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
