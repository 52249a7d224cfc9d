"""Heartbeat entries stamped in the future (``XADD {qwc}:heartbeats <future-ms>-0 …``),
in-process against real Redis (the embedded 6.2, and QWC_TEST_REDIS_URL's server) and a
real store: dead-lettered with the reason, never moving a last-seen time, and the
stream's and group's ids set back so later heartbeats are stamped by the clock again."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from producers.heartbeat import HeartbeatProducer
from schemas.codec import encode
from schemas.keys import GROUP_LIVENESS, MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from schemas.settings import Settings
from tests.cluster import membership_changes, new_uuid, wait_for
from tests.test_liveness_worker import settings as liveness_settings
from workers.bus.future import CHUNK, FUTURE_TOLERANCE_MS, dead_letter_future
from workers.bus.streams import ensure_group, entry_ms, read_group, server_time_ms
from workers.liveness import view
from workers.liveness.worker import LivenessWorker
from workers.store import Store

KEYS = Keys()
HOUR_MS = 3_600_000


def settings(redis_url: str, tmp_path: Path) -> Settings:
    return liveness_settings(redis_url, tmp_path, 0.3, 0.6)


def forged(uuid: str, name: str = "phantom") -> dict[bytes, bytes]:
    hb = Heartbeat(uuid=uuid, name=name, seq=1, started_at_ms=0, sent_at_ms=0)
    return {MESSAGE_FIELD: encode(hb)}


def dead_letters(r: redis.Redis) -> dict[bytes, bytes]:
    """id of the original entry -> reason, for every dead letter."""
    return {f[b"id"]: f[b"reason"] for _, f in r.xrange(KEYS.dead_letters)}


def last_ids(r: redis.Redis) -> tuple[int, int]:
    """(ms of the stream's last id, ms of the liveness group's last delivered id)."""
    info = r.xinfo_stream(KEYS.heartbeats)
    (group,) = [g for g in r.xinfo_groups(KEYS.heartbeats) if g["name"] == b"liveness"]
    return entry_ms(info["last-generated-id"]), entry_ms(group["last-delivered-id"])


def state(r: redis.Redis, member: str) -> str | None:
    s = view.read_snapshot(r, KEYS).states.get(member)
    return None if s is None else s.value


def test_a_future_heartbeat_is_dead_lettered_and_later_ones_are_stamped_by_the_clock(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    w = LivenessWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    member, phantom = new_uuid(), new_uuid()
    beats = HeartbeatProducer(r, uuid=member, name="real", interval_s=1)
    beats.beat()
    w.step()
    assert state(r, member) == "active"
    future_id = f"{server_time_ms(r) + HOUR_MS}-0".encode()
    r.xadd(KEYS.heartbeats, forged(phantom), id=future_id)
    inherited = beats.beat()  # Redis keeps ids growing: stamped after the forged one
    assert inherited is not None and entry_ms(inherited) == entry_ms(future_id)
    w.step()
    letters = dead_letters(r)
    assert set(letters) == {future_id, inherited}
    assert b"ms ahead of the Redis server clock (tolerance 1000 ms)" in letters[future_id]
    assert phantom not in view.read_snapshot(r, KEYS).states
    now_ms = server_time_ms(r)
    assert view.read_observations(r, KEYS, [member])[0].last_seen_ms <= now_ms  # type: ignore[operator]
    assert all(ms <= now_ms for ms in last_ids(r))
    assert r.xrange(KEYS.heartbeats, min=f"{now_ms + 1}") == []
    fresh = beats.beat()  # stamped by the clock again, and delivered to the group
    assert fresh is not None and entry_ms(fresh) <= server_time_ms(r)
    w.step()
    assert view.read_observations(r, KEYS, [member])[0].last_seen_ms == entry_ms(fresh)
    while state(r, member) != "dead":  # silent from now on: dead on time
        w.step()
    dead = membership_changes(r, KEYS, member)[-1]
    assert dead.last_seen_ms == entry_ms(fresh) and 600 <= dead.at_ms - entry_ms(fresh) < 1100


def test_a_last_id_moved_to_the_future_without_an_entry_is_set_back(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    """``XSETID`` alone (no entry to find) poisons every later heartbeat: they are
    dead-lettered and the ids set back; the one after is read normally."""
    w = LivenessWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    member = new_uuid()
    beats = HeartbeatProducer(r, uuid=member, name="real", interval_s=1)
    beats.beat()
    w.step()
    r.execute_command("XSETID", KEYS.heartbeats, f"{server_time_ms(r) + HOUR_MS}-0")
    poisoned = beats.beat()
    w.step()
    assert set(dead_letters(r)) == {poisoned}
    fresh = beats.beat()
    w.step()
    assert view.read_observations(r, KEYS, [member])[0].last_seen_ms == entry_ms(fresh)  # type: ignore[arg-type]


def test_the_tolerance_boundary_and_a_second_repair_that_finds_nothing(r: redis.Redis) -> None:
    """The caller's clock (here 10 s ahead of the server's) decides the limit: an entry at
    exactly now + tolerance stays, one a millisecond later goes; the entries are acked in
    every group. A second repair, as by another replica, changes nothing."""
    ensure_group(r, KEYS.heartbeats, GROUP_LIVENESS)
    ensure_group(r, KEYS.heartbeats, "other")
    now_ms = server_time_ms(r) + 10_000
    kept = r.xadd(KEYS.heartbeats, forged(new_uuid()), id=f"{now_ms + FUTURE_TOLERANCE_MS}-0")
    gone = r.xadd(KEYS.heartbeats, forged(new_uuid()), id=f"{now_ms + FUTURE_TOLERANCE_MS + 1}-0")
    read_group(r, KEYS.heartbeats, GROUP_LIVENESS, "c", count=10, block_ms=None)
    repair = dead_letter_future(r, KEYS, KEYS.heartbeats, now_ms=now_ms)
    assert repair.limit_ms == now_ms + FUTURE_TOLERANCE_MS
    assert repair.dead_lettered == [gone] and repair.set_back_to == kept
    assert [e for e, _ in r.xrange(KEYS.heartbeats)] == [kept]
    assert r.xinfo_stream(KEYS.heartbeats)["last-generated-id"] == kept
    assert r.xpending(KEYS.heartbeats, GROUP_LIVENESS)["pending"] == 1  # only `kept`
    groups = {g["name"]: g["last-delivered-id"] for g in r.xinfo_groups(KEYS.heartbeats)}
    assert groups == {b"liveness": kept, b"other": b"0-0"}
    again = dead_letter_future(r, KEYS, KEYS.heartbeats, now_ms=now_ms)
    assert again.dead_lettered == [] and again.set_back_to is None
    assert r.xlen(KEYS.dead_letters) == 1


def test_many_future_entries_are_repaired_in_chunks(r: redis.Redis) -> None:
    ensure_group(r, KEYS.heartbeats, GROUP_LIVENESS)
    start_ms = server_time_ms(r) + HOUR_MS
    pipe = r.pipeline(transaction=False)
    for i in range(CHUNK + 5):
        pipe.xadd(KEYS.heartbeats, forged(new_uuid()), id=f"{start_ms + i}-0")
    pipe.execute()
    repair = dead_letter_future(r, KEYS, KEYS.heartbeats, now_ms=server_time_ms(r))
    assert len(repair.dead_lettered) == CHUNK + 5 == r.xlen(KEYS.dead_letters)
    assert r.xlen(KEYS.heartbeats) == 0
    assert entry_ms(r.xinfo_stream(KEYS.heartbeats)["last-generated-id"]) < start_ms


def test_two_replicas_repair_once_and_keep_deciding(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    """Two liveness workers on one group (each its own client) under a stream of forged
    future entries: each forged entry is dead-lettered once, the real member stays active
    while it beats and turns dead once it stops."""
    s = settings(redis_url, tmp_path)
    stop = threading.Event()
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    workers = [
        LivenessWorker(c, store, s, consumer=f"w{i}", stop=stop) for i, c in enumerate(clients)
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    member = new_uuid()
    beats = HeartbeatProducer(r, uuid=member, name="real", interval_s=0.05)
    try:
        for t in threads:
            t.start()
        beats.start()
        wait_for(lambda: state(r, member) == "active", what="active")
        forged_ids = []
        for i in range(5):
            future_id = f"{server_time_ms(r) + HOUR_MS + i}-0".encode()
            forged_ids.append(future_id)
            r.xadd(KEYS.heartbeats, forged(new_uuid()), id=future_id)
            wait_for(lambda f=future_id: f in dead_letters(r), what="forged entry dead-lettered")
            assert state(r, member) == "active"
        ids = [f[b"id"] for _, f in r.xrange(KEYS.dead_letters)]
        assert len(ids) == len(set(ids)) and set(forged_ids) <= set(ids)
        assert len(view.read_snapshot(r, KEYS).states) == 1
        beats.stop()
        wait_for(lambda: state(r, member) == "dead", what="dead once silent")
    finally:
        beats.stop()
        stop.set()
        for t in threads:
            t.join(5)
        for c in clients:
            c.close()
    assert [c.to_state.value for c in membership_changes(r, KEYS, member)] == [
        "active",
        "inactive",
        "dead",
    ]


@pytest.mark.parametrize("top", ["none", "behind"])
def test_an_emptied_stream_is_set_back_to_the_clock(r: redis.Redis, top: str) -> None:
    if top == "behind":
        r.xadd(KEYS.heartbeats, forged(new_uuid()))
    r.xadd(KEYS.heartbeats, forged(new_uuid()), id=f"{server_time_ms(r) + HOUR_MS}-0")
    now_ms = server_time_ms(r)
    repair = dead_letter_future(r, KEYS, KEYS.heartbeats, now_ms=now_ms)
    assert repair.set_back_to is not None and entry_ms(repair.set_back_to) >= now_ms
    assert entry_ms(repair.set_back_to) <= server_time_ms(r)
