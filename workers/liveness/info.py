"""The members' stored heartbeats (``view:info``), written only when their content changes.

What the consumers of ``view:info`` read — takeover and recovery candidates (tags, passive,
running executions), ``qwc members``, the manager, ``qwc commands`` — is a heartbeat's
*content*: everything but ``seq`` and ``sent_at_ms``, which change with every heartbeat.
So a member's stored heartbeat is rewritten only when its content changed:
``view:info:content`` holds each stored heartbeat's content digest, and :func:`write_info`
compares and sets in one script, counting the heartbeats it actually changed in
``view:info:writes``. A liveness replica reads that count with every batch: when it moved
by more than its own writes, another writer changed what is stored, and the replica no
longer trusts what it knew of it (:mod:`workers.liveness.known`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgpack
import redis

from schemas.keys import Keys
from schemas.messages import Heartbeat

__all__ = [
    "info_content",
    "info_digest",
    "queue_info",
    "queue_info_count",
    "same_content",
    "write_info",
]


def info_content(hb: Heartbeat) -> tuple[Any, ...]:
    """What a stored heartbeat says for its readers: all but ``seq`` and ``sent_at_ms``."""
    return (hb.uuid, hb.name, hb.tags, hb.running, hb.passive, hb.version, hb.started_at_ms)


def same_content(a: Heartbeat, b: Heartbeat) -> bool:
    """Whether ``a`` and ``b`` say the same to the readers of ``view:info``."""
    return a is b or info_content(a) == info_content(b)


def info_digest(hb: Heartbeat) -> bytes:
    """A digest of ``info_content(hb)`` (16 bytes), the same in every process."""
    packed = msgpack.packb(info_content(hb), use_bin_type=True)
    return hashlib.blake2b(packed, digest_size=16).digest()


def queue_info(pipe: Any, keys: Keys, info: Mapping[str, tuple[Heartbeat, bytes]]) -> None:
    """Queue on ``pipe`` the writing of stored heartbeats ``uuid -> (heartbeat, raw)``,
    whatever is stored, counted as changes."""
    if info:
        pipe.hset(keys.view_info, mapping={u: raw for u, (_, raw) in info.items()})
        pipe.hset(keys.view_info_content, mapping={u: info_digest(h) for u, (h, _) in info.items()})
        pipe.incrby(keys.view_info_writes, len(info))


def queue_info_count(pipe: Any, keys: Keys) -> None:
    """Queue the read of ``view:info:writes`` (reply: bytes, or None before any write)."""
    pipe.get(keys.view_info_writes)


# KEYS: info, content, writes. ARGV: per heartbeat uuid, content digest, raw. Stores each
# heartbeat whose digest differs from the stored one's; returns {writes count, stored now}.
_WRITE_LUA = """
local n = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
if n > 0 then return {redis.call('INCRBY', KEYS[3], n), n} end
return {tonumber(redis.call('GET', KEYS[3]) or '0'), 0}
"""


def write_info(
    r: redis.Redis, keys: Keys, info: Mapping[str, tuple[Heartbeat, bytes]]
) -> tuple[int, int]:
    """Store the heartbeats ``uuid -> (heartbeat, raw)`` whose content differs from the
    stored one's, atomically. Returns (``view:info:writes`` after, how many it stored).
    Redis errors propagate."""
    argv: list[Any] = []
    for uuid, (hb, raw) in info.items():
        argv += [uuid, info_digest(hb), raw]
    script = r.register_script(_WRITE_LUA)
    count, stored = script(
        keys=[keys.view_info, keys.view_info_content, keys.view_info_writes], args=argv
    )
    return int(count), int(stored)
