"""Which heartbeats the liveness worker believes, before they touch the view.

A heartbeat moves its member's last-seen time, so whoever can add one keeps a member alive
(or invents one). Checked here, in this order, for each batch the worker reads:

1. :func:`not_future`: an entry id more than
   :data:`workers.bus.future.FUTURE_TOLERANCE_MS` ahead of the Redis server's clock was
   not stamped by Redis' own ``XADD *``: it is dead-lettered, and the stream's last id
   and the group's last delivered id are set back, so later heartbeats are not stamped
   after it (:func:`workers.bus.future.dead_letter_future`).
2. :func:`signed` (only with ``heartbeat.secret``): an entry without a valid HMAC-SHA256
   signature (:mod:`schemas.signing`) is refused, with the reason (unsigned, or a
   signature that does not match).
3. :func:`not_replayed` (only with ``heartbeat.secret``): a signed heartbeat re-added
   later (captured from the stream, to keep a dead member alive) is refused. A member's
   heartbeats of one incarnation (``started_at_ms``) carry growing ``seq`` numbers, so a
   heartbeat whose ``seq`` is not above the highest one accepted for that incarnation,
   in a *newer* entry than the one that carried it, is a copy. A heartbeat delivered
   again (a worker crashed before its ack) is an *older* entry: it passes, and changes
   nothing. The view keeps, per member, the :data:`INCARNATIONS_KEPT` incarnations heard
   last (``{qwc}:view:incarnations``); a copy of an older one, or any copy after the view
   was lost (Redis restarted empty), is not recognised.

The caller dead-letters the refused entries and deletes them from the stream (a reader
of the stream, ``qwc record``, cannot tell a forged heartbeat from a real one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from schemas.signing import signature_problem
from workers.bus.future import FUTURE_TOLERANCE_MS, dead_letter_future
from workers.bus.streams import Entry, entry_ms

__all__ = [
    "INCARNATIONS_KEPT",
    "Beat",
    "Refused",
    "not_future",
    "not_replayed",
    "not_replayed_by",
    "signed",
]

INCARNATIONS_KEPT = 16

Beat = tuple[bytes, Heartbeat, bytes]
"""A decoded heartbeat: its entry id, the message and its raw bytes."""


@dataclass(frozen=True)
class Refused:
    """An entry not to believe: its id, its message bytes and why."""

    entry_id: bytes
    raw: bytes
    reason: str


def not_future(
    r: redis.Redis, keys: Keys, entries: Sequence[Entry], now_ms: int
) -> Sequence[Entry]:
    """``entries`` (in id order, as a stream read returns them) without those whose ids are
    more than FUTURE_TOLERANCE_MS ahead of the Redis clock ``now_ms`` (server ms, read after
    the entries). When there are any, the heartbeats stream is repaired first: they, and
    every other entry as far ahead, are dead-lettered with the reason, and its ids set
    back. Redis errors propagate."""
    limit_ms = now_ms + FUTURE_TOLERANCE_MS
    if not entries or entry_ms(entries[-1][0]) <= limit_ms:  # the newest is the last
        return entries
    repair = dead_letter_future(r, keys, keys.heartbeats, now_ms=now_ms)
    return [e for e in entries if entry_ms(e[0]) <= repair.limit_ms]


def signed(entries: Sequence[Entry], secret: bytes) -> tuple[list[Entry], list[Refused]]:
    """Split ``entries`` into those signed with ``secret`` and the refused (pure)."""
    kept: list[Entry] = []
    refused: list[Refused] = []
    for entry_id, fields in entries:
        problem = signature_problem(secret, fields)
        if problem is None:
            kept.append((entry_id, fields))
        else:
            refused.append(Refused(entry_id, fields.get(MESSAGE_FIELD, b""), problem))
    return kept, refused


# KEYS: incarnations. ARGV: incarnations kept per member, then per heartbeat (stream order)
# uuid, started_at_ms, seq, entry ms, entry seq. Records each incarnation's highest seq and
# the entry that carried it; returns per heartbeat -1 (believed) or that seq (a copy).
_REPLAY_LUA = """
local keep = tonumber(ARGV[1])
local maps, out = {}, {}
for i = 2, #ARGV, 5 do
  local uuid, started = ARGV[i], ARGV[i + 1]
  local seq, ms, eseq = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local m = maps[uuid]
  if m == nil then
    local raw = redis.call('HGET', KEYS[1], uuid)
    m = raw and cmsgpack.unpack(raw) or {}
    maps[uuid] = m
  end
  local last = m[started]
  if last == nil or seq > last[1] then
    m[started] = {seq, ms, eseq}
    out[#out + 1] = -1
  elseif ms < last[2] or (ms == last[2] and eseq <= last[3]) then
    out[#out + 1] = -1
  else
    out[#out + 1] = last[1]
  end
end
for uuid, m in pairs(maps) do
  local starts = {}
  for started in pairs(m) do starts[#starts + 1] = started end
  if #starts > keep then
    table.sort(starts, function(a, b)
      local x, y = m[a], m[b]
      return x[2] > y[2] or (x[2] == y[2] and x[3] > y[3])
    end)
    for j = keep + 1, #starts do m[starts[j]] = nil end
  end
  redis.call('HSET', KEYS[1], uuid, cmsgpack.pack(m))
end
return out
"""


def not_replayed(
    r: redis.Redis, keys: Keys, beats: Sequence[Beat]
) -> tuple[list[Beat], list[Refused]]:
    """Split signed heartbeats (in stream order) into the believed and the copies of
    heartbeats already accepted, recording what was believed (one atomic script, safe with
    several replicas). Redis errors propagate."""
    return not_replayed_by(
        r, keys, beats, lambda b: (b[0], b[1].uuid, b[1].started_at_ms, b[1].seq, b[2])
    )


T = TypeVar("T")


def not_replayed_by(
    r: redis.Redis,
    keys: Keys,
    beats: Sequence[T],
    fields: Callable[[T], tuple[bytes, str, int, int, bytes]],
) -> tuple[list[T], list[Refused]]:
    """:func:`not_replayed` for heartbeats of any shape: ``fields`` gives each one's entry
    id, member uuid, ``started_at_ms``, ``seq`` and raw message."""
    if not beats:
        return [], []
    argv: list[Any] = [INCARNATIONS_KEPT]
    described = [fields(b) for b in beats]
    for entry_id, uuid, started_at_ms, seq, _ in described:
        ms, _, entry_seq = entry_id.partition(b"-")
        argv += [uuid, started_at_ms, seq, ms, entry_seq]
    script = r.register_script(_REPLAY_LUA)
    verdicts = script(keys=[keys.view_incarnations], args=argv)
    kept: list[T] = []
    refused: list[Refused] = []
    for beat, (entry_id, uuid, started_at_ms, seq, raw), seen_seq in zip(
        beats, described, verdicts, strict=True
    ):
        if seen_seq < 0:
            kept.append(beat)
            continue
        reason = (
            f"replayed heartbeat: member {uuid} seq {seq} of the incarnation started "
            f"at {started_at_ms} ms was already heard (up to seq {seen_seq}) in an "
            "earlier entry"
        )
        refused.append(Refused(entry_id, raw, reason))
    return kept, refused
