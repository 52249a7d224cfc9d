"""Decoding a batch of heartbeat entries, validating what repeats only once.

A member's heartbeats differ, one to the next, in ``seq`` and ``sent_at_ms`` only: its
uuid, name, tags, running executions, passive flag, version and incarnation change
rarely. Validating every heartbeat with pydantic cost more than reading it from Redis, so
:class:`HeartbeatDecoder` validates those fields once per member and content:

- an entry whose message unpacks to the fields of a heartbeat the codec validated before
  (the same keys in the same order, the same values of the same msgpack types: compared
  packed again), except ``seq`` and ``sent_at_ms``, which are plain non-negative
  integers, is that heartbeat with its own ``seq``: the codec would accept it and give
  the same content;
- every other entry (a member's first heartbeat, a changed content, anything odd) goes to
  the codec (:func:`workers.bus.streams.decode_entries`, one batched call for all of
  them), which accepts it or gives the reason it is bad; the decoder remembers the
  content of each good one.

So every entry is validated, and a bad one is refused with the codec's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import msgpack

from schemas.keys import MESSAGE_FIELD
from schemas.messages import Heartbeat
from workers.bus.streams import Decoded, Entry, decode_entries

__all__ = ["MEMO_MAX", "Heard", "HeartbeatDecoder"]

MEMO_MAX = 100_000  # contents remembered (one per member); all forgotten when more would be


Heard = tuple[bytes, Heartbeat, int, bytes]
"""A heartbeat entry the codec accepts: ``(entry id, content, seq, raw message)``.

The content is this entry's heartbeat except ``seq`` and ``sent_at_ms``, which may be
those of an earlier heartbeat of the same content; this entry's ``seq`` is the third.
(A plain tuple: one per heartbeat, where a named tuple costs several times more.)"""


class HeartbeatDecoder:
    """Decodes heartbeat entries, remembering the last content the codec validated for
    each member (at most :data:`MEMO_MAX`). One per worker; not thread-safe."""

    def __init__(self) -> None:
        self._memo: dict[bytes, Heartbeat] = {}  # content (packed again) -> its heartbeat
        self._key_of: dict[str, bytes] = {}  # member uuid -> its content's key
        self._pack = msgpack.Packer().pack

    def decode(self, entries: Sequence[Entry]) -> tuple[list[Heard], list[Decoded]]:
        """Split ``entries`` into heartbeats (in stream order) and the entries that are not
        one (each with the codec's reason, or another type's message)."""
        beats: list[Heard | None] = []
        rest: list[int] = []
        memo_get, unpackb, pack, add = self._memo.get, msgpack.unpackb, self._pack, beats.append
        for entry_id, fields in entries:
            try:  # unpacked as the codec does (str keys only), its content validated before
                raw = fields[MESSAGE_FIELD]
                body = unpackb(raw)
                seq, sent = body.pop("seq"), body.pop("sent_at_ms")
                hb = memo_get(pack(body))
            except Exception:  # no message, not a map, anything odd: the codec decides
                hb = None
            if hb is not None and type(seq) is int and type(sent) is int and seq >= 0 and sent >= 0:
                add((entry_id, hb, seq, raw))
            else:
                rest.append(len(beats))
                add(None)
        if not rest:
            return cast(list[Heard], beats), []
        others = self._slow([entries[i] for i in rest], beats, rest)
        return [b for b in beats if b is not None], others

    def _slow(
        self, entries: list[Entry], beats: list[Heard | None], at: list[int]
    ) -> list[Decoded]:
        """Decode ``entries`` with the codec; good heartbeats go to ``beats`` at ``at``."""
        others: list[Decoded] = []
        for i, d in zip(at, decode_entries(entries), strict=True):
            hb = d.message
            if not isinstance(hb, Heartbeat):
                others.append(d)
                continue
            beats[i] = (d.entry_id, hb, hb.seq, d.raw)
            self._remember(d.raw, hb)
        return others

    def _remember(self, raw: bytes, hb: Heartbeat) -> None:
        """Remember ``hb``'s content, forgetting the member's previous one."""
        body = msgpack.unpackb(raw, strict_map_key=True)  # the codec took it: a map
        body.pop("seq")
        body.pop("sent_at_ms")
        key = self._pack(body)
        self._memo.pop(self._key_of.pop(hb.uuid, b""), None)
        if len(self._memo) >= MEMO_MAX:
            self._memo.clear()
            self._key_of.clear()
        self._memo[key] = hb
        self._key_of[hb.uuid] = key
