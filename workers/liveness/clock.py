"""The liveness loop's clock: one script per pass reads the time and what the sweep needs.

Every pass first checks which Redis server holds the view (its ``run_id``, from ``INFO
server`` inside the script, so on a Redis Cluster the node owning the ``{prefix}`` slot):
redis-py reconnects silently, so a failover may show in nothing else before a silent
member's deadline. When the view was last read on another server (a failover to a
replica, a restart that kept its data), the pass says so instead (:class:`ServerNews`),
and the worker restarts the grace rule (:func:`note_server`) before reading the clock
again: the new server may miss the last writes, and nobody could heartbeat while no
server answered. A Redis user not allowed ``INFO`` gets :class:`ServerNews` with the
refusal, once; the worker then reads the clock without the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, overload

import redis

from schemas.codec import encode
from schemas.keys import Keys
from schemas.messages import ViewRestart

__all__ = ["VIEW_RESTARTS_MAXLEN", "Clock", "ServerNews", "note_server", "read_clock"]

VIEW_RESTARTS_MAXLEN = 1000

# KEYS: started, watch, server. ARGV: inactive_ms, now_ms ('' = the server's TIME), '1' to
# check the server first. One round trip for the loop's clock and sweep: the time, the
# view's start (created now when missing: the view was lost), members whose watch score is
# at least considerInactive old (rules.active_after_ms: at or before now - inactive), and
# the oldest still-active score. Or, checking the server: {'server', run_id} when the view
# was last read on another one, {'refused', why} when INFO is not allowed.
_CLOCK_LUA = """
if ARGV[3] == '1' then
  local info = redis.pcall('INFO', 'server')
  if type(info) == 'table' then return {'refused', info.err} end
  local run_id = string.match(info, 'run_id:(%x+)')
  if run_id ~= redis.call('GET', KEYS[3]) then return {'server', run_id} end
end
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local started = redis.call('GET', KEYS[1])
local created = 0
if not started then
  redis.call('SET', KEYS[1], now)
  started = now
  created = 1
end
local cutoff = now - tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
local first = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. cutoff, '+inf',
                         'WITHSCORES', 'LIMIT', 0, 1)
return {now, tonumber(started), created, stale, first[2] or false}
"""


@dataclass(frozen=True)
class Clock:
    """The loop's reading of the server clock and the view, taken in one round trip."""

    now_ms: int
    view_started_ms: int
    view_created: bool
    candidates: list[str]  # watch score <= now - considerInactive: may turn inactive or dead
    first_active_score_ms: int | None  # the next member to reach considerInactive


class ServerNews(NamedTuple):
    """What a pass's server check found instead of the clock: the view was last read on
    another server than ``run_id`` (this one), or ``INFO`` was ``refused`` (why)."""

    run_id: str | None
    refused: str | None


@overload
def read_clock(
    r: redis.Redis,
    keys: Keys,
    inactive_ms: int,
    now_ms: int | None = None,
    *,
    check_server: Literal[False] = False,
) -> Clock: ...


@overload
def read_clock(
    r: redis.Redis, keys: Keys, inactive_ms: int, now_ms: int | None = None, *, check_server: bool
) -> Clock | ServerNews: ...


def read_clock(
    r: redis.Redis,
    keys: Keys,
    inactive_ms: int,
    now_ms: int | None = None,
    *,
    check_server: bool = False,
) -> Clock | ServerNews:
    """Server time, the view's start (created if lost) and the sweep candidates, atomically.
    With ``check_server``, first the server check (see the module docstring): its news,
    if any, come instead of the clock.

    ``now_ms``: a time to use instead of the server's (a virtual clock, in tests)."""
    script = r.register_script(_CLOCK_LUA)
    reply = script(
        keys=[keys.view_started, keys.view_watch, keys.view_server],
        args=[inactive_ms, _now_arg(now_ms), "1" if check_server else ""],
    )
    if reply[0] == b"server":
        return ServerNews(run_id=reply[1].decode(), refused=None)
    if reply[0] == b"refused":
        return ServerNews(run_id=None, refused=reply[1].decode())
    now, started, created, stale, first = reply
    return Clock(
        now_ms=int(now),
        view_started_ms=int(started),
        view_created=bool(created),
        candidates=[u.decode() for u in stale],
        first_active_score_ms=None if first is None else int(float(first)),
    )


# KEYS: server, started, restarts. ARGV: run_id, ViewRestart payload, maxlen, now_ms ('' =
# the server's clock). Records the server; when the view was last checked on another one,
# restarts the view's grace (started := the time of a ViewRestart entry it appends: its id,
# or ``now_ms``-<next seq>). Returns the new start, or false.
_SERVER_LUA = """
local before = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
if before and before ~= ARGV[1] and redis.call('EXISTS', KEYS[2]) == 1 then
  local id = '*'
  if ARGV[4] ~= '' then
    local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
    local seq = 0
    if last and tonumber(string.match(last[1], '^(%d+)')) == tonumber(ARGV[4]) then
      seq = tonumber(string.match(last[1], '-(%d+)$')) + 1
    end
    id = ARGV[4] .. '-' .. seq
  end
  id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], id, 'm', ARGV[2])
  local now = tonumber(string.match(id, '^(%d+)'))
  redis.call('SET', KEYS[2], now)
  return now
end
return false
"""


def note_server(r: redis.Redis, keys: Keys, run_id: str, now_ms: int | None = None) -> int | None:
    """Record that the view is read on the server ``run_id``. When it was last read on
    another server, restart the grace rule (appending a ViewRestart to ``view:restarts``,
    for record/replay) and return the view's new start (server ms); else None. Idempotent
    across replicas: only the first to see the change restarts.

    ``now_ms``: a time to use instead of the server's (a virtual clock, in tests; it must
    not be older than the last restart's)."""
    script = r.register_script(_SERVER_LUA)
    payload = encode(ViewRestart(run_id=run_id))
    restarted = script(
        keys=[keys.view_server, keys.view_started, keys.view_restarts],
        args=[run_id, payload, VIEW_RESTARTS_MAXLEN, _now_arg(now_ms)],
    )
    return None if restarted is None else int(restarted)


def _now_arg(now_ms: int | None) -> int | str:
    return "" if now_ms is None else now_ms
