"""Appending events to ``{qwc}:events`` (thin I/O): what the emitters call.

Each event is appended once per id: :func:`emit` sets ``{qwc}:events:once:<id>`` (``SET NX
PX``, kept :data:`ONCE_TTL_MS`) and appends the event in one Lua script, so an emitter
that runs again over the same happening — a proposal redelivered after its worker died
between its SQL commit and its acknowledgement — appends nothing the second time, and one
that died before appending appends it then. The stream keeps about
:data:`EVENTS_MAXLEN` entries. Nothing waits on the notify worker: emitting is one Redis
call, whatever the receivers do.

Emitters, each called after the SQL commit it tells of and before the stream entry that
led to it is acknowledged: the liveness worker (member state changes, appended by the
same Lua script that applies the change: :mod:`workers.liveness.view`), the takeover and
recovery workers (:func:`emit_decided`, :func:`emit_held`), ``qwc takeover release``
(:func:`emit_released`). The members running jobs emit ``execution.*`` events without
waiting, through :class:`workers.notify.sender.EventSender` (:mod:`workers.node.tell`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Event, RecoveryProposal, TakeoverProposal
from workers.liveness import view
from workers.notify.events import EVENTS_MAXLEN, decided_event, held_event, released_event
from workers.store import Db, find_recovery, find_takeover

__all__ = [
    "ONCE_TTL_MS",
    "emit",
    "emit_decided",
    "emit_held",
    "emit_released",
]

log = logging.getLogger(__name__)

ONCE_TTL_MS = 24 * 3600 * 1000  # an id re-emitted within a day is recognised and skipped

# KEYS: once key, events stream. ARGV: ttl ms, maxlen, field, payload.
_EMIT_ONCE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4])
end
return false
"""


def emit(client: redis.Redis, keys: Keys, event: Event, *, once: bool = True) -> bool:
    """Append ``event`` to ``{qwc}:events``; with ``once`` (the default) only if its id was
    not appended in the last :data:`ONCE_TTL_MS`. Returns whether it was appended. Raises
    ``redis.RedisError`` (the caller's loop retries; the event is then emitted again, once)."""
    payload = encode(event)
    if once:
        script = client.register_script(_EMIT_ONCE_LUA)
        args: list[bytes | int] = [ONCE_TTL_MS, EVENTS_MAXLEN, MESSAGE_FIELD, payload]
        appended = script(keys=[keys.event_once(event.id), keys.events], args=args) is not None
    else:
        client.xadd(keys.events, {MESSAGE_FIELD: payload}, maxlen=EVENTS_MAXLEN, approximate=True)
        appended = True
    if appended:
        log.info("event %s emitted", event.id)
    else:
        log.debug("event %s was emitted before; not again", event.id)
    return appended


def emit_decided(client: redis.Redis, keys: Keys, store: Db, what: str, proposal_id: str) -> bool:
    """``<what>.committed`` or ``<what>.cancelled`` (``what``: ``takeover`` or ``recovery``)
    for the proposal ``proposal_id``, read from its audit row — so a redelivered proposal
    whose commit was already done still tells of it. Nothing for other outcomes."""
    row = (
        find_takeover(store, proposal_id)
        if what == "takeover"
        else find_recovery(store, proposal_id)
    )
    if row is None or row.outcome not in ("committed", "cancelled"):
        return False
    uuids = [row.dead_uuid, *getattr(row, "destinations", {})]
    event = decided_event(what, row, view.read_names(client, keys, uuids))
    return event is not None and emit(client, keys, event)


def emit_held(
    client: redis.Redis,
    keys: Keys,
    what: str,
    proposal: TakeoverProposal | RecoveryProposal,
    *,
    reason: str,
    now_ms: int,
) -> bool:
    """``<what>.held``: the mass-failure guard holds ``proposal`` for ``reason`` (found so
    at ``now_ms``, Redis ms); once per proposal, whichever replica finds it first."""
    dead = proposal.dead_uuid
    name = view.read_names(client, keys, [dead]).get(dead, "")
    event = held_event(
        what, proposal_id=proposal.id, dead_uuid=dead, reason=reason, at_ms=now_ms, name=name
    )
    return emit(client, keys, event)


def emit_released(
    client: redis.Redis, keys: Keys, released_ms: int, held: Mapping[str, str]
) -> bool:
    """``takeover.released``: the guard was released at ``released_ms`` (Redis ms) with the
    proposals ``held`` (id -> why)."""
    return emit(client, keys, released_event(released_ms, held))
