"""Stream helpers against real Redis (embedded 6.2, and QWC_TEST_REDIS_URL when set)."""

from __future__ import annotations

import time
import uuid

import msgpack
import pytest
import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from workers.bus.connect import BLOCK_MS_MAX
from workers.bus.retry import is_group_missing, is_transient
from workers.bus.streams import (
    ack,
    autoclaim,
    dead_letter,
    decode_entries,
    ensure_group,
    entry_ms,
    publish,
    read_group,
    read_pending,
    server_time_ms,
)

KEYS = Keys("qwc-test")
STREAM = KEYS.heartbeats
GROUP = "g"


def _beat(seq: int = 1) -> Heartbeat:
    return Heartbeat(uuid=str(uuid.uuid4()), name="member", seq=seq, started_at_ms=1, sent_at_ms=2)


def _pending_count(r: redis.Redis, consumer: str | None = None) -> int:
    summary = r.xpending(STREAM, GROUP)
    if consumer is None:
        return int(summary["pending"])
    return sum(int(c["pending"]) for c in summary["consumers"] if c["name"] == consumer.encode())


def test_entry_ms_and_server_time(r: redis.Redis) -> None:
    assert entry_ms(b"1700000000123-7") == 1700000000123
    assert entry_ms("42-0") == 42
    with pytest.raises(ValueError):
        entry_ms(b"not-an-id")
    before_ms = server_time_ms(r)
    entry_id = publish(r, STREAM, _beat())
    assert entry_id is not None
    assert before_ms <= entry_ms(entry_id) <= server_time_ms(r)
    assert abs(server_time_ms(r) - time.time() * 1000) < 5_000  # same machine


def test_publish_writes_the_encoded_message(r: redis.Redis) -> None:
    beat = _beat()
    entry_id = publish(r, STREAM, beat)
    [(read_id, fields)] = r.xrange(STREAM)
    assert read_id == entry_id
    assert fields == {MESSAGE_FIELD: encode(beat)}


def test_publish_pipelined_and_trimmed(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    assert publish(r, STREAM, _beat(), pipeline=pipe) is None
    assert r.xlen(STREAM) == 0
    pipe.execute()
    assert r.xlen(STREAM) == 1
    pipe = r.pipeline(transaction=False)
    for seq in range(500):
        publish(r, STREAM, _beat(seq), maxlen=10, pipeline=pipe)
    pipe.execute()
    assert 10 <= r.xlen(STREAM) < 300  # approximate trimming: whole nodes of ~100


def test_ensure_group_is_idempotent_and_creates_the_stream(r: redis.Redis) -> None:
    publish(r, "other", _beat())
    ensure_group(r, STREAM, GROUP)
    ensure_group(r, STREAM, GROUP)  # BUSYGROUP ignored
    assert r.exists(STREAM) == 1
    assert [g["name"] for g in r.xinfo_groups(STREAM)] == [GROUP.encode()]
    ensure_group(r, "other", "late", start_id="$")
    assert read_group(r, "other", "late", "c", count=10, block_ms=None) == []
    with pytest.raises(redis.ResponseError):
        ensure_group(r, "other", "bad", start_id="not-an-id")


def test_read_group_reads_in_batches_then_nothing(r: redis.Redis) -> None:
    ensure_group(r, STREAM, GROUP)
    ids = [publish(r, STREAM, _beat(seq)) for seq in range(5)]
    batches = [read_group(r, STREAM, GROUP, "c", count=2, block_ms=None) for _ in range(4)]
    assert [len(b) for b in batches] == [2, 2, 1, 0]
    assert [entry_id for batch in batches for entry_id, _ in batch] == ids
    assert all(set(fields) == {MESSAGE_FIELD} for batch in batches for _, fields in batch)


def test_read_group_block_is_capped_below_the_socket_timeout(r: redis.Redis) -> None:
    ensure_group(r, STREAM, GROUP)
    started = time.monotonic()
    assert read_group(r, STREAM, GROUP, "c", count=1, block_ms=10**9) == []
    elapsed_s = time.monotonic() - started
    assert BLOCK_MS_MAX / 1000 - 0.1 <= elapsed_s < BLOCK_MS_MAX / 1000 + 1.5
    started = time.monotonic()
    assert read_group(r, STREAM, GROUP, "c", count=1, block_ms=0) == []  # 0: no wait
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("lost", ["flushdb", "stream-deleted", "group-destroyed"])
def test_a_lost_group_is_a_transient_nogroup_until_created_again(r: redis.Redis, lost: str) -> None:
    """Readers do not recreate a lost group on the spot: the NOGROUP is transient, and the
    reader's Prepared creates its groups before the next pass (tests/test_group_recovery.py)."""
    ensure_group(r, STREAM, GROUP)
    publish(r, STREAM, _beat())
    if lost == "flushdb":
        r.flushdb()  # what a Redis restarted without its data looks like
    elif lost == "stream-deleted":
        r.delete(STREAM)
    else:
        r.xgroup_destroy(STREAM, GROUP)
    reads = [
        lambda: read_group(r, STREAM, GROUP, "c", count=10, block_ms=None),
        lambda: read_pending(r, STREAM, GROUP, "c", count=10),
    ]
    for read in reads:
        with pytest.raises(redis.ResponseError) as raised:
            read()
        assert is_group_missing(raised.value) and is_transient(raised.value)
    ensure_group(r, STREAM, GROUP)
    entries = read_group(r, STREAM, GROUP, "c", count=10, block_ms=None)
    assert len(entries) == (1 if lost == "group-destroyed" else 0)  # start_id "0": re-read
    later = publish(r, STREAM, _beat(2))
    assert [e for e, _ in read_group(r, STREAM, GROUP, "c", count=10, block_ms=None)] == [later]


def test_read_pending_returns_unacked_and_drops_deleted(r: redis.Redis) -> None:
    ensure_group(r, STREAM, GROUP)
    ids = [publish(r, STREAM, _beat(seq)) for seq in range(4)]
    assert read_pending(r, STREAM, GROUP, "c", count=10) == []
    read_group(r, STREAM, GROUP, "c", count=3, block_ms=None)
    read_group(r, STREAM, GROUP, "other", count=1, block_ms=None)
    assert [e for e, _ in read_pending(r, STREAM, GROUP, "c", count=10)] == ids[:3]
    ack(r, STREAM, GROUP, [ids[0]])
    r.xdel(STREAM, ids[1])
    assert [e for e, _ in read_pending(r, STREAM, GROUP, "c", count=10)] == [ids[2]]
    assert _pending_count(r, "c") == 1  # the deleted entry was acked
    assert _pending_count(r, "other") == 1


def test_ack_clears_pending_and_accepts_nothing(r: redis.Redis) -> None:
    ensure_group(r, STREAM, GROUP)
    for seq in range(3):
        publish(r, STREAM, _beat(seq))
    entries = read_group(r, STREAM, GROUP, "c", count=10, block_ms=None)
    assert _pending_count(r) == 3
    ack(r, STREAM, GROUP, [])
    pipe = r.pipeline(transaction=False)
    ack(r, STREAM, GROUP, [e for e, _ in entries], pipeline=pipe)
    assert _pending_count(r) == 3
    pipe.execute()
    assert _pending_count(r) == 0


def test_autoclaim_takes_over_entries_idle_long_enough(r: redis.Redis) -> None:
    ensure_group(r, STREAM, GROUP)
    ids = [publish(r, STREAM, _beat(seq)) for seq in range(3)]
    read_group(r, STREAM, GROUP, "dead", count=10, block_ms=None)
    assert autoclaim(r, STREAM, GROUP, "b", min_idle_ms=60_000, count=10) == (b"0-0", [])
    deadline = time.monotonic() + 10
    claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
    while not claimed and time.monotonic() < deadline:
        _, claimed = autoclaim(r, STREAM, GROUP, "b", min_idle_ms=50, count=2)
    assert [e for e, _ in claimed] == ids[:2]
    assert all(MESSAGE_FIELD in fields for _, fields in claimed)
    assert _pending_count(r, "b") == 2
    assert _pending_count(r, "dead") == 1


def test_autoclaim_acks_claimed_entries_that_were_deleted(r: redis.Redis) -> None:
    ensure_group(r, STREAM, GROUP)
    ids = [publish(r, STREAM, _beat(seq)) for seq in range(3)]
    read_group(r, STREAM, GROUP, "dead", count=10, block_ms=None)
    r.xdel(STREAM, ids[1])
    deadline = time.monotonic() + 10
    claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
    while not claimed and time.monotonic() < deadline:
        next_id, claimed = autoclaim(r, STREAM, GROUP, "b", min_idle_ms=50, count=10)
    assert [e for e, _ in claimed] == [ids[0], ids[2]]
    assert next_id == b"0-0"
    assert _pending_count(r) == 2  # the deleted one is no longer pending


def test_dead_letter_fields(r: redis.Redis) -> None:
    before_ms = server_time_ms(r)
    dead_letter(
        r, KEYS, origin_stream=STREAM, entry_id=b"5-1", raw=b"\xc1\x00", reason="not msgpack"
    )
    pipe = r.pipeline(transaction=False)
    dead_letter(
        r, KEYS, origin_stream="s2", entry_id=None, raw=b"", reason="r2", pipeline=pipe, now_ms=7
    )
    assert r.xlen(KEYS.dead_letters) == 1
    pipe.execute()
    [(_, first), (_, second)] = r.xrange(KEYS.dead_letters)
    assert first[b"reason"] == b"not msgpack"
    assert first[b"raw"] == b"\xc1\x00"
    assert first[b"stream"] == STREAM.encode()
    assert first[b"id"] == b"5-1"
    assert before_ms <= int(first[b"at_ms"]) <= server_time_ms(r)
    assert second == {b"reason": b"r2", b"raw": b"", b"stream": b"s2", b"id": b"", b"at_ms": b"7"}


def test_decode_entries_survives_garbage(r: redis.Redis) -> None:
    beat = _beat()
    r.xadd(STREAM, {MESSAGE_FIELD: encode(beat)})
    r.xadd(STREAM, {MESSAGE_FIELD: b"\xc1"})  # never valid msgpack
    r.xadd(STREAM, {MESSAGE_FIELD: msgpack.packb([1, 2])})
    r.xadd(STREAM, {MESSAGE_FIELD: msgpack.packb({"t": "nope", "v": 1})})
    r.xadd(STREAM, {MESSAGE_FIELD: msgpack.packb({"t": "heartbeat", "v": 99})})
    r.xadd(STREAM, {b"x": b"y"})
    entries = r.xrange(STREAM)
    decoded = decode_entries(entries)
    assert [d.entry_id for d in decoded] == [e for e, _ in entries]
    assert decoded[0].message == beat
    assert decoded[0].error is None
    assert decoded[0].raw == encode(beat)
    assert [d.message for d in decoded[1:]] == [None] * 5
    errors = [d.error or "" for d in decoded[1:]]
    assert "not msgpack" in errors[0]
    assert "not a map" in errors[1]
    assert "unknown message type" in errors[2]
    assert "version" in errors[3]
    assert "no field 'm'" in errors[4]
    assert decoded[1].raw == b"\xc1"
    assert msgpack.unpackb(decoded[5].raw) == {b"x": b"y"}
