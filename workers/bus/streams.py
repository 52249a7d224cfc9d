"""Thin helpers over Redis streams: publish, consumer groups, claim, ack, dead letters.

Entries carry one field, :data:`schemas.keys.MESSAGE_FIELD` (``b"m"``), holding a message
encoded by :func:`schemas.codec.encode`. Entry ids are Redis server times
(``<ms>-<seq>``): :func:`entry_ms` is when Redis appended the entry, by its own clock.

Functions that write accept ``pipeline=`` (a ``redis.client.Pipeline``) to batch work into
one round trip; the caller executes it. Redis errors propagate unchanged (connection errors
are the caller's loop's business, see :mod:`workers.bus.retry`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import msgpack
import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from schemas.codec import decode_many, encode
from schemas.errors import DecodeError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Message
from workers.bus.connect import BLOCK_MS_MAX, BLOCK_TIMER_SLACK_MS

__all__ = [
    "DEAD_LETTER_MAXLEN",
    "Decoded",
    "Entry",
    "ack",
    "autoclaim",
    "dead_letter",
    "decode_entries",
    "ensure_group",
    "entry_ms",
    "publish",
    "read_by_deadline",
    "read_group",
    "read_pending",
    "server_time_ms",
]

log = logging.getLogger(__name__)

DEAD_LETTER_MAXLEN = 100_000

Entry = tuple[bytes, dict[bytes, bytes]]
"""One stream entry: its id and its fields."""


class Decoded(NamedTuple):
    """One entry after decoding: ``message`` is None exactly when ``error`` says why."""

    entry_id: bytes
    message: Message | None
    raw: bytes
    error: str | None


def entry_ms(entry_id: bytes | str) -> int:
    """The milliseconds part of a stream id (``b"1700000000000-3"`` -> 1700000000000).

    Raises ValueError for a malformed id.
    """
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def server_time_ms(r: redis.Redis) -> int:
    """The Redis server's clock (``TIME``) in milliseconds."""
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def publish(
    r: redis.Redis,
    stream: str,
    message: Message,
    *,
    maxlen: int | None = None,
    pipeline: Pipeline | None = None,
) -> bytes | None:
    """XADD ``message`` to ``stream``; trim to about ``maxlen`` entries when given.

    Returns the new entry id, or None when queued on ``pipeline``.
    """
    target: redis.Redis | Pipeline = r if pipeline is None else pipeline
    result = target.xadd(stream, {MESSAGE_FIELD: encode(message)}, maxlen=maxlen, approximate=True)
    return None if pipeline is not None else cast(bytes, result)


def ensure_group(r: redis.Redis, stream: str, group: str, start_id: str = "0") -> None:
    """Create consumer ``group`` on ``stream`` (and the stream); an existing group is kept.

    ``start_id`` "0" delivers the entries already in the stream, "$" only new ones.
    """
    try:
        r.xgroup_create(stream, group, id=start_id, mkstream=True)
    except redis.ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise


def read_group(
    r: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    count: int,
    block_ms: int | None,
) -> list[Entry]:
    """XREADGROUP ``>``: up to ``count`` new entries, delivered to ``consumer``.

    ``block_ms`` waits up to that long for entries, capped at BLOCK_MS_MAX; None or <= 0
    does not wait (never "block forever"). A missing group (Redis restarted empty, stream
    deleted) raises ``NOGROUP``, a transient error: the reader's
    :class:`workers.bus.retry.Prepared` creates its groups again before the next pass.
    """
    block = None if block_ms is None or block_ms <= 0 else min(block_ms, BLOCK_MS_MAX)
    return _xreadgroup(r, stream, group, consumer, ">", count=count, block_ms=block)


def read_pending(
    r: redis.Redis, stream: str, group: str, consumer: str, *, count: int
) -> list[Entry]:
    """Up to ``count`` entries ``consumer`` was delivered but did not ack (its pending list,
    e.g. before a crash), oldest first. Pending entries deleted from the stream meanwhile
    are acked and left out. A missing group raises ``NOGROUP``, as in :func:`read_group`.
    """
    entries = _xreadgroup(r, stream, group, consumer, "0", count=count, block_ms=None)
    deleted = [entry_id for entry_id, fields in entries if not fields]
    if deleted:
        ack(r, stream, group, deleted)
        log.info("stream %s: acked %s pending entries deleted from it", stream, len(deleted))
    return [(entry_id, fields) for entry_id, fields in entries if fields]


def ack(
    r: redis.Redis,
    stream: str,
    group: str,
    ids: Sequence[bytes],
    *,
    pipeline: Pipeline | None = None,
) -> None:
    """XACK ``ids`` (nothing to do for none)."""
    if ids:
        (r if pipeline is None else pipeline).xack(stream, group, *ids)


def autoclaim(
    r: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    min_idle_ms: int,
    count: int,
    start_id: bytes | str = b"0-0",
) -> tuple[bytes, list[Entry]]:
    """XAUTOCLAIM: take over up to ``count`` entries pending for at least ``min_idle_ms``
    with ids from ``start_id`` on, whoever holds them (a dead consumer, or a delay that
    passed). Returns ``(next_start_id, entries)``; ``b"0-0"`` means the scan is complete.

    Claimed entries that were deleted from the stream are acked and left out (Redis 7 does
    that itself; Redis 6.2 returns them as nil without their ids).
    """
    reply = r.xautoclaim(stream, group, consumer, min_idle_ms, start_id=start_id, count=count)
    next_id = cast(bytes, reply[0])
    claimed = cast(list[tuple[bytes | None, dict[bytes, bytes] | None]], reply[1])
    entries = [(eid, fields) for eid, fields in claimed if eid is not None and fields]
    if len(entries) < len(claimed):
        _ack_deleted(r, stream, group, consumer, start_id, next_id, count, entries)
    return next_id, entries


def _ack_deleted(
    r: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    start_id: bytes | str,
    next_id: bytes,
    count: int,
    live: list[Entry],
) -> None:
    """Redis 6.2: ack what ``consumer`` holds in the scanned range and no longer exists."""
    end = "+" if next_id == b"0-0" else next_id
    pending = r.xpending_range(stream, group, start_id, end, count * 10, consumername=consumer)
    known = {eid for eid, _ in live}
    candidates = [cast(bytes, p["message_id"]) for p in pending if p["message_id"] not in known]
    pipe = r.pipeline(transaction=False)
    for eid in candidates:
        pipe.xrange(stream, eid, eid)
    gone = [eid for eid, found in zip(candidates, pipe.execute(), strict=True) if not found]
    if gone:
        ack(r, stream, group, gone)
        log.info("stream %s: acked %s claimed entries deleted from it", stream, len(gone))


def dead_letter(
    r: redis.Redis,
    keys: Keys,
    *,
    origin_stream: str,
    entry_id: bytes | None,
    raw: bytes,
    reason: str,
    pipeline: Pipeline | None = None,
    now_ms: int | None = None,
) -> None:
    """Append an undecodable entry to ``keys.dead_letters`` (trimmed to about
    DEAD_LETTER_MAXLEN) with fields ``reason``, ``raw``, ``stream``, ``id`` (empty when
    unknown) and ``at_ms`` (``now_ms``, else the Redis server clock). The caller acks the
    original entry.
    """
    at_ms = server_time_ms(r) if now_ms is None else now_ms
    fields: dict[FieldT, EncodableT] = {
        b"reason": reason,
        b"raw": raw,
        b"stream": origin_stream,
        b"id": entry_id or b"",
        b"at_ms": at_ms,
    }
    target: redis.Redis | Pipeline = r if pipeline is None else pipeline
    target.xadd(keys.dead_letters, fields, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
    log.warning("stream %s: entry %r dead-lettered: %s", origin_stream, entry_id, reason)


def decode_entries(entries: Sequence[Entry]) -> list[Decoded]:
    """Decode each entry's ``m`` field. Never raises: a bad entry gets ``error`` set and
    ``raw`` holding its ``m`` bytes, or (no ``m`` field) all its fields as a msgpack map.
    """
    out: list[Decoded | None] = [None] * len(entries)
    with_message: list[tuple[int, bytes, bytes]] = []
    for i, (entry_id, fields) in enumerate(entries):
        raw = fields.get(MESSAGE_FIELD)
        if raw is None:
            everything = cast(bytes, msgpack.packb(fields, use_bin_type=True))
            why = f"no field 'm' in the entry (fields {sorted(fields)})"
            out[i] = Decoded(entry_id, None, everything, why)
        else:
            with_message.append((i, entry_id, raw))
    try:
        messages = decode_many([raw for _, _, raw in with_message])
    except Exception as exc:  # the codec promises DecodeErrors; a worker must survive anyway
        crashed = f"decoder crashed: {type(exc).__name__}: {exc}"
        messages = [DecodeError(crashed, raw) for _, _, raw in with_message]
    for (i, entry_id, raw), message in zip(with_message, messages, strict=True):
        if isinstance(message, DecodeError):
            out[i] = Decoded(entry_id, None, raw, message.reason)
        else:
            out[i] = Decoded(entry_id, message, raw, None)
    return [d for d in out if d is not None]


def _xreadgroup(
    r: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    from_id: str,
    *,
    count: int,
    block_ms: int | None,
) -> list[Entry]:
    reply = r.xreadgroup(group, consumer, {stream: from_id}, count=count, block=block_ms)
    if not reply:
        return []
    # RESP2: [[stream, [(id, fields), ...]]]; one stream was asked for.
    entries = cast(list[list[Any]], reply)[0][1]
    return [(eid, fields or {}) for eid, fields in entries]


T = TypeVar("T")


def read_by_deadline(read: Callable[[int | None], T], wait_ms: int, stop: threading.Event) -> T:
    """Call ``read(block_ms)`` so that it returns by ``wait_ms`` from now, not up to a Redis
    server tick later: block in Redis until BLOCK_TIMER_SLACK_MS before the deadline, then
    wait out the rest here (``stop`` cuts it short) and read once more without blocking.
    ``read`` returns something falsy when nothing came.
    """
    deadline = time.monotonic() + max(0, wait_ms) / 1000
    block_ms = wait_ms - BLOCK_TIMER_SLACK_MS
    got = read(block_ms if block_ms > 0 else None)
    if got or wait_ms <= 0:
        return got
    rest_s = deadline - time.monotonic()
    if rest_s > 0 and stop.wait(rest_s):
        return got
    return read(None)
