"""The mass-failure guard, operator side: which takeovers it holds, and releasing them.

The takeover worker holds a proposal when most members would turn dead at once (see
``workers.proposals.decide.guard_reason``) and records why in ``{qwc}:takeover:held``.
Releasing writes the Redis server time to ``{qwc}:takeover:released``: proposals made
before it are committed at the workers' next check; a later mass failure is held again.
``qwc takeover release``, ``qwc members`` and the manager's API call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

from schemas.keys import Keys
from workers.bus.streams import server_time_ms
from workers.notify.emit import emit_released

__all__ = ["GuardState", "Release", "guard_state", "held_takeovers", "release_guard"]


@dataclass(frozen=True)
class Release:
    """What a release did: when (Redis server ms), and how many proposals it lets proceed."""

    released_ms: int
    held: int


@dataclass(frozen=True)
class GuardState:
    """The held proposals (proposal id -> why) and the last release (None: never)."""

    held: dict[str, str]
    released_ms: int | None


def held_takeovers(client: redis.Redis, keys: Keys) -> dict[str, str]:
    """Proposal id -> the reason the guard holds it (empty: nothing is held)."""
    raw = cast(dict[bytes, bytes], client.hgetall(keys.takeover_held))
    return {k.decode(): v.decode() for k, v in raw.items()}


def guard_state(client: redis.Redis, keys: Keys) -> GuardState:
    """The held proposals and the time of the last release, in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.takeover_held)
    pipe.get(keys.takeover_released)
    raw_held, released = pipe.execute()
    held = {k.decode(): v.decode() for k, v in raw_held.items()}
    return GuardState(held, None if released is None else int(released))


def release_guard(client: redis.Redis, keys: Keys) -> Release:
    """Let the proposals held so far proceed (``qwc takeover release``), and tell of it
    (``takeover.released``).

    Raises ``redis.RedisError`` when Redis does not answer (nothing released then).
    """
    now_ms = server_time_ms(client)
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.takeover_released, now_ms)
    pipe.hgetall(keys.takeover_held)
    _, held = pipe.execute()
    emit_released(client, keys, now_ms, {k.decode(): v.decode() for k, v in held.items()})
    return Release(now_ms, len(held))
