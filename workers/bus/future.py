"""Stream entries stamped in the future: dead-lettered, and the stream's ids set back.

An entry id is the Redis server's clock when the entry was added (``XADD … *``), so a
reader that reads the clock (``TIME``) after reading an entry never sees it ahead of the
clock, except by a step back of the server's clock. But anyone who may write the stream can
add an entry with an explicit id in the future (``XADD {qwc}:heartbeats <future-ms>-0 …``),
or move its last id there (``XSETID``), and Redis keeps ids growing: every later ``XADD *``
gets an id after it, so a heartbeat's time would freeze in the future and its member
would never turn inactive (a member SIGKILLed then stayed active, a phantom member got
jobs). The consumer group's last delivered id moves past the forged id too, so even with
the stream repaired, new entries would not be delivered to the group.

:func:`dead_letter_future` repairs a stream atomically (one Lua script per chunk of
:data:`CHUNK` entries; every key shares the ``{prefix}`` hash slot, so it runs on Redis
Cluster too): each entry whose id is more than ``tolerance_ms`` ahead of the server's
clock is copied to the dead-letter stream (fields ``reason``, ``raw``, ``stream``, ``id``,
``at_ms``, as :func:`workers.bus.streams.dead_letter` writes them), acknowledged in every
group and deleted; then the stream's last id (``XSETID``; Redis 6.2 and 7 both allow a
lower one as long as it is not below the last entry) and every group's last delivered id
(``XGROUP SETID``) that are still beyond the tolerance are set back to the later of the
last remaining entry and the server's clock. Legitimate entries added between the forged
one and the repair had inherited ids in the future too: they are dead-lettered with it (a
heartbeat or two of each member; the next ones are read normally). Several replicas may
repair at once: the scripts are atomic, the second finds nothing left to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from schemas.keys import MESSAGE_FIELD, Keys
from workers.bus.streams import DEAD_LETTER_MAXLEN

__all__ = ["CHUNK", "FUTURE_TOLERANCE_MS", "Repair", "dead_letter_future"]

log = logging.getLogger(__name__)

FUTURE_TOLERANCE_MS = 1_000  # an entry id further ahead of Redis' TIME than this is forged
CHUNK = 1_000  # entries dead-lettered per script call (keeps each call short)

# KEYS: stream, dead letters. ARGV: caller's now_ms, tolerance_ms, chunk, dead-letter maxlen,
# message field. Returns {limit_ms, dead-lettered ids, more (0/1), last id set or false}.
_REPAIR_LUA = """
local t = redis.call('TIME')
local now = math.max(tonumber(ARGV[1]), tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local limit = now + tonumber(ARGV[2])
local function ms_of(id) return tonumber(string.match(id, '^(%d+)')) end
local function field(flat, name)
  for i = 1, #flat, 2 do if flat[i] == name then return flat[i + 1] end end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {string.format('%d', limit), {}, 0, false} end
local ahead = redis.call('XRANGE', KEYS[1], string.format('%d-0', limit + 1), '+',
                         'COUNT', ARGV[3])
local ids = {}
for i, entry in ipairs(ahead) do
  local id, fields = entry[1], entry[2]
  local all = {}
  for j = 1, #fields, 2 do all[fields[j]] = fields[j + 1] end
  local reason = string.format(
    'entry id %s is %.0f ms ahead of the Redis server clock (tolerance %s ms)',
    id, ms_of(id) - now, ARGV[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'reason', reason,
             'raw', all[ARGV[5]] or cmsgpack.pack(all), 'stream', KEYS[1], 'id', id,
             'at_ms', string.format('%d', now))
  ids[i] = id
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #ids > 0 then
  redis.call('XDEL', KEYS[1], unpack(ids))
  for _, g in ipairs(groups) do redis.call('XACK', KEYS[1], field(g, 'name'), unpack(ids)) end
end
if #ahead == tonumber(ARGV[3]) then return {string.format('%d', limit), ids, 1, false} end
local last = string.format('%d-0', now)
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if top and (ms_of(top[1]) > now or (ms_of(top[1]) == now and top[1] ~= last)) then
  last = top[1]
end
local set = false
if ms_of(field(redis.call('XINFO', 'STREAM', KEYS[1]), 'last-generated-id')) > limit then
  local reply = redis.pcall('XSETID', KEYS[1], last, 'MAXDELETEDID', last)  -- Redis 7
  if type(reply) == 'table' and reply.err then redis.call('XSETID', KEYS[1], last) end
  set = last
end
for _, g in ipairs(groups) do
  if ms_of(field(g, 'last-delivered-id')) > limit then
    redis.call('XGROUP', 'SETID', KEYS[1], field(g, 'name'), last)
    set = last
  end
end
return {string.format('%d', limit), ids, 0, set}
"""


@dataclass(frozen=True)
class Repair:
    """What :func:`dead_letter_future` did: entries with ids beyond ``limit_ms`` (server ms)
    were dead-lettered (``dead_lettered``, by this call; others may have been by another
    replica), and the stream's or a group's ids set back to ``set_back_to`` (None: none
    needed it)."""

    limit_ms: int
    dead_lettered: list[bytes]
    set_back_to: bytes | None


def dead_letter_future(
    r: redis.Redis,
    keys: Keys,
    stream: str,
    *,
    now_ms: int,
    tolerance_ms: int = FUTURE_TOLERANCE_MS,
) -> Repair:
    """Dead-letter the entries of ``stream`` more than ``tolerance_ms`` ahead of the Redis
    server's clock and set its ids back (see the module docstring). ``now_ms`` is the
    caller's reading of the server clock; the script uses the later of it and its own
    ``TIME``, so an entry it keeps is never ahead of the clock by more than the tolerance.
    Redis errors propagate (the script's writes are atomic per chunk)."""
    script = r.register_script(_REPAIR_LUA)
    dead: list[bytes] = []
    while True:
        reply: list[Any] = script(
            keys=[stream, keys.dead_letters],
            args=[now_ms, tolerance_ms, CHUNK, DEAD_LETTER_MAXLEN, MESSAGE_FIELD],
        )
        limit, ids, more, set_back = reply
        dead += ids
        if not more:
            break
    repair = Repair(int(limit), dead, set_back or None)
    if dead or repair.set_back_to:
        log.warning(
            "stream %s: %s entries stamped more than %s ms ahead of the Redis clock "
            "dead-lettered; ids set back to %s",
            stream,
            len(dead),
            tolerance_ms,
            repair.set_back_to,
        )
    return repair
