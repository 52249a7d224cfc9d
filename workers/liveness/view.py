"""The liveness view in Redis, shared by every liveness worker replica.

Layout (key names in :mod:`schemas.keys`): ``view:seen`` (zset uuid -> last heartbeat ms),
``view:watch`` (members not yet dead, scored at most their last heartbeat, plus store
members never heard, scored at the view's start: the sweep's index), ``view:state`` (hash
uuid -> state), ``view:info`` (hash uuid -> a heartbeat of its latest content, msgpack:
:mod:`workers.liveness.info`), ``view:started`` (ms the view began: the grace rule's
origin), ``view:server`` (run_id of the Redis server the view was last checked on).

A view read on another Redis server than before (a failover to a replica, a restart that
kept its data) may have lost the last writes, and nobody could heartbeat while no server
answered: :func:`note_server` then restarts the grace rule, as for a lost view.

State changes go through one Lua script that compares-and-sets a member's state and last
seen time and appends the change to the membership stream in the same atomic step, so a
change happens once whichever replica sees it first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import redis

from schemas.codec import decode_as, encode
from schemas.errors import DecodeError
from schemas.events import EVENTS_MAXLEN, member_event
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat, MembershipChange, MemberState
from workers.liveness.clock import Clock, ServerNews, note_server, read_clock
from workers.liveness.info import queue_info
from workers.liveness.rules import MemberObservation, Transition, membership_change

__all__ = [
    "Clock",
    "ServerNews",
    "ViewSnapshot",
    "apply_transitions",
    "changes_from",
    "decode_heartbeats",
    "note_server",
    "observations_from",
    "queue_changes",
    "queue_observe",
    "queue_read_back",
    "queue_record",
    "read_clock",
    "read_heartbeats",
    "read_names",
    "read_observations",
    "read_snapshot",
    "seed_unseen",
]

log = logging.getLogger(__name__)

MEMBERSHIP_MAXLEN = 100_000

# KEYS: state, seen, watch, membership, events. ARGV: maxlen, message field, events maxlen,
# then per change 6 values: uuid, expected state ("" = none), expected last seen ("" =
# never), new state, payload, event payload ("" = no event).
_TRANSITION_LUA = """
local applied = {}
local n = 0
for i = 4, #ARGV, 6 do
  local uuid, want_state, want_seen = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local cur_state = redis.call('HGET', KEYS[1], uuid) or ''
  local cur_seen = redis.call('ZSCORE', KEYS[2], uuid)
  local same_seen
  if want_seen == '' then same_seen = (not cur_seen) else
    same_seen = cur_seen and tonumber(cur_seen) == tonumber(want_seen) end
  if cur_state == want_state and same_seen then
    redis.call('HSET', KEYS[1], uuid, ARGV[i + 3])
    if ARGV[i + 3] == 'dead' then redis.call('ZREM', KEYS[3], uuid) end
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[1], '*', ARGV[2], ARGV[i + 4])
    if ARGV[i + 5] ~= '' then
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', ARGV[2], ARGV[i + 5])
    end
    n = n + 1
    applied[n] = uuid
  end
end
return applied
"""


def queue_observe(
    pipe: Any, keys: Keys, beats: Sequence[tuple[int, Heartbeat, bytes]]
) -> list[str]:
    """Queue on ``pipe`` the recording of heartbeats ``(entry_ms, heartbeat, raw)`` (every
    one's time, watch score and payload, whatever is stored) and the read-back of each
    member's state and last seen time, as the pipeline's last two commands.

    Returns the member uuids, in the order of those two replies (see ``observations_from``).
    """
    latest: dict[str, tuple[int, Heartbeat, bytes]] = {}
    for ms, hb, raw in beats:
        if hb.uuid not in latest or latest[hb.uuid][0] <= ms:
            latest[hb.uuid] = (ms, hb, raw)
    if not latest:
        return []
    scores = {uuid: ms for uuid, (ms, _, _) in latest.items()}
    queue_record(pipe, keys, scores, watch=scores)
    queue_info(pipe, keys, {uuid: (hb, raw) for uuid, (_, hb, raw) in latest.items()})
    queue_read_back(pipe, keys, list(latest))
    return list(latest)


def queue_record(
    pipe: Any, keys: Keys, seen: Mapping[Any, int | bytes], *, watch: Mapping[str, int]
) -> None:
    """Queue on ``pipe`` the recording of heartbeats: each member's last-seen time in
    ``seen`` (uuid -> entry ms, as str and int or, cheaper to send, as bytes; one ``ZADD
    GT``: it never goes back) and the sweep's watch scores in ``watch`` (``ZADD GT``).
    Their stored heartbeats: :mod:`workers.liveness.info`."""
    if seen:
        pipe.zadd(keys.view_seen, seen, gt=True)
    if watch:
        pipe.zadd(keys.view_watch, watch, gt=True)


def queue_read_back(pipe: Any, keys: Keys, uuids: Sequence[str]) -> None:
    """Queue the read of each member's state and last seen time (two replies, in the order
    of ``uuids``, for ``observations_from``); nothing when ``uuids`` is empty."""
    if uuids:
        pipe.hmget(keys.view_state, list(uuids))
        pipe.zmscore(keys.view_seen, list(uuids))


def queue_changes(pipe: Any, keys: Keys, after: bytes | None, count: int) -> None:
    """Queue the read of up to ``count`` membership changes after the entry ``after``
    (one reply, for ``changes_from``); with ``after`` None, of the stream's last entry only
    (where to start)."""
    if after is None:
        pipe.xrevrange(keys.membership, count=1)
    else:
        pipe.xrange(keys.membership, min=b"(" + after, count=count)


def changes_from(
    reply: Sequence[tuple[bytes, Mapping[bytes, bytes]]],
) -> list[tuple[bytes, MembershipChange | None]]:
    """Parse a ``queue_changes`` reply: (entry id, the change; None for an entry that is
    not one), in stream order."""
    out: list[tuple[bytes, MembershipChange | None]] = []
    for entry_id, fields in reply:
        raw = (fields or {}).get(MESSAGE_FIELD)
        try:
            out.append((entry_id, decode_as(raw, MembershipChange) if raw else None))
        except DecodeError:
            out.append((entry_id, None))
    return out


def observations_from(
    uuids: Sequence[str], states: Sequence[bytes | None], seen: Sequence[float | None]
) -> list[MemberObservation]:
    """Parse the HMGET state / ZMSCORE seen replies for ``uuids``."""
    state_of = _STATE_BYTES.get
    return [
        MemberObservation(uuid, state_of(s) if s else None, None if ms is None else int(ms))
        for uuid, s, ms in zip(uuids, states, seen, strict=True)
    ]


_STATE_BYTES = {s.value.encode(): s for s in MemberState}


def read_observations(r: redis.Redis, keys: Keys, uuids: Sequence[str]) -> list[MemberObservation]:
    """Each member's state, last seen time and (never heard: watch score) since when the
    view knows it, in one round trip."""
    if not uuids:
        return []
    pipe = r.pipeline(transaction=False)
    pipe.hmget(keys.view_state, list(uuids))
    pipe.zmscore(keys.view_seen, list(uuids))
    pipe.zmscore(keys.view_watch, list(uuids))
    states, seen, watched = pipe.execute()
    return [
        o if o.last_seen_ms is not None or w is None else replace(o, known_since_ms=int(w))
        for o, w in zip(observations_from(list(uuids), states, seen), watched, strict=True)
    ]


def seed_unseen(r: redis.Redis, keys: Keys, uuids: Iterable[str], now_ms: int) -> int:
    """Watch store members the view never heard of, known since ``now_ms`` (kept if known
    earlier). Returns how many were added. Members with a state are left alone."""
    wanted = sorted(set(uuids))
    if not wanted:
        return 0
    states = r.hmget(keys.view_state, wanted)
    new = [u for u, s in zip(wanted, states, strict=True) if s is None]
    if not new:
        return 0
    added = r.zadd(keys.view_watch, dict.fromkeys(new, now_ms), nx=True)
    return int(added or 0)


def apply_transitions(
    r: redis.Redis,
    keys: Keys,
    transitions: Sequence[Transition],
    *,
    now_ms: int,
    names: dict[str, str],
    reason: str,
) -> list[MembershipChange]:
    """Compare-and-set each transition; return the changes this call applied (emitted once).

    Each change applied also appends its event (``member.inactive`` / ``.dead`` /
    ``.active`` again, :func:`workers.notify.events.member_event`) to ``{qwc}:events`` in
    the same atomic step: a change and its event exist together or not at all."""
    if not transitions:
        return []
    changes = {
        t.uuid: membership_change(t, at_ms=now_ms, name=names.get(t.uuid, ""), reason=reason)
        for t in transitions
    }
    argv: list[Any] = [MEMBERSHIP_MAXLEN, MESSAGE_FIELD, EVENTS_MAXLEN]
    for t in transitions:
        event = member_event(changes[t.uuid])
        argv += [
            t.uuid,
            t.from_state.value if t.from_state else "",
            "" if t.last_seen_ms is None else t.last_seen_ms,
            t.to_state.value,
            encode(changes[t.uuid]),
            b"" if event is None else encode(event),
        ]
    script = r.register_script(_TRANSITION_LUA)
    applied = script(
        keys=[keys.view_state, keys.view_seen, keys.view_watch, keys.membership, keys.events],
        args=argv,
    )
    out = [changes[u.decode()] for u in applied]
    for c in out:
        log.info("member %s (%s): %s -> %s", c.uuid, c.name, c.from_state, c.to_state)
    return out


@dataclass(frozen=True)
class ViewSnapshot:
    """Everything ``qwc members`` shows from Redis, read in one round trip."""

    now_ms: int
    view_started_ms: int | None
    seen_ms: dict[str, int]
    states: dict[str, MemberState]
    info: dict[str, bytes]


# KEYS: started, seen, state, info. The view and the server time in one atomic step (a
# script, not a pipeline: a Redis Cluster pipeline cannot send TIME).
_SNAPSHOT_LUA = """
local t = redis.call('TIME')
return {t[1], t[2], redis.call('GET', KEYS[1]),
        redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
        redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
"""


def _pairs(flat: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))


def read_snapshot(r: redis.Redis, keys: Keys) -> ViewSnapshot:
    """The whole view at the Redis server's current time."""
    script = r.register_script(_SNAPSHOT_LUA)
    sec, usec, started, seen, states, info = script(
        keys=[keys.view_started, keys.view_seen, keys.view_state, keys.view_info]
    )
    return ViewSnapshot(
        now_ms=int(sec) * 1000 + int(usec) // 1000,
        view_started_ms=int(started) if started else None,
        seen_ms={u.decode(): int(float(s)) for u, s in _pairs(seen)},
        states={u.decode(): MemberState(s.decode()) for u, s in _pairs(states)},
        info={u.decode(): v for u, v in _pairs(info)},
    )


def read_heartbeats(r: redis.Redis, keys: Keys, uuids: Sequence[str]) -> dict[str, Heartbeat]:
    """The last heartbeat of each member that has one (undecodable ones are left out)."""
    if not uuids:
        return {}
    raws = cast(list[bytes | None], r.hmget(keys.view_info, list(uuids)))
    return decode_heartbeats(dict(zip(uuids, raws, strict=True)))


def decode_heartbeats(info: Mapping[str, bytes | None]) -> dict[str, Heartbeat]:
    """Decode ``view:info`` values; entries that are missing or do not decode are left out."""
    out: dict[str, Heartbeat] = {}
    for uuid, raw in info.items():
        if raw is None:
            continue
        try:
            out[uuid] = decode_as(raw, Heartbeat)
        except DecodeError:
            continue
    return out


def read_names(r: redis.Redis, keys: Keys, uuids: Sequence[str]) -> dict[str, str]:
    """Member names from their last heartbeats."""
    return {u: hb.name for u, hb in read_heartbeats(r, keys, uuids).items()}
