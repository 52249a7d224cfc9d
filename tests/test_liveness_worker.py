"""The liveness worker in-process, against real Redis and a real store: skewed member clocks,
redelivery, replicas racing on the same view, and exact deadlines."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import redis

from producers.heartbeat import HeartbeatProducer
from schemas.keys import GROUP_LIVENESS, Keys
from schemas.settings import Settings
from tests.cluster import membership_changes, new_uuid, wait_for
from tests.inprocess import Threads, worker_client
from workers.bus.connect import server_run_id
from workers.bus.streams import server_time_ms
from workers.liveness import view
from workers.liveness.worker import LivenessWorker
from workers.store import Store

KEYS = Keys()


def settings(redis_url: str, tmp_path: Path, inactive_s: float, dead_s: float) -> Settings:
    return Settings(
        redis_url=redis_url,
        home_dir=tmp_path,
        heartbeat_interval_s=0.1,
        heartbeat_delay_s=0,
        heartbeat_consider_inactive_s=inactive_s,
        heartbeat_consider_dead_s=dead_s,
    )


def start(threads: Threads, redis_url: str, store: Store, s: Settings, consumer: str) -> None:
    """A liveness worker running in a thread (a client of its own) until the test ends."""
    client = worker_client(redis_url)
    threads.start(LivenessWorker(client, store, s, consumer=consumer, stop=threads.stop))


def state(r: redis.Redis, member: str) -> str | None:
    s = view.read_snapshot(r, KEYS).states.get(member)
    return None if s is None else s.value


@pytest.mark.parametrize("skew_s", [-3600, 3600])
def test_member_clock_skew_changes_nothing(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, skew_s: int, redis_url: str
) -> None:
    # 1 s of inactivity before dead: a CI run on a loaded machine went straight from active
    # to dead with 0.5 s (the worker's thread did not run inside that window)
    s = settings(redis_url, tmp_path, 1.0, 2.0)
    start(threads, redis_url, store, s, "w1")
    member = new_uuid()
    producer = HeartbeatProducer(
        r, uuid=member, name="skewed", interval_s=0.1, clock=lambda: time.time() + skew_s
    )
    producer.start()
    wait_for(lambda: state(r, member) == "active", what="active")
    time.sleep(1.1)  # the scenario: heartbeating longer than considerInactive stays active
    assert state(r, member) == "active"
    producer.stop()
    wait_for(lambda: state(r, member) == "dead", what="dead")
    changes = membership_changes(r, KEYS, member)
    assert [c.to_state.value for c in changes] == ["active", "inactive", "dead"]
    assert 1000 <= changes[1].at_ms - changes[1].last_seen_ms <= 1300
    assert 2000 <= changes[2].at_ms - changes[2].last_seen_ms <= 2300


def test_redelivered_heartbeats_change_nothing(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    s = settings(redis_url, tmp_path, 60, 120)
    w = LivenessWorker(r, store, s, consumer="w1")
    members = [new_uuid() for _ in range(5)]
    for m in members:
        HeartbeatProducer(r, uuid=m, name=m[:8], interval_s=1).beat()
    w.step()
    before = membership_changes(r, KEYS)
    assert sorted(c.uuid for c in before) == sorted(members)
    # the same entries delivered again (as after a crash before XACK): claim them back
    entries = r.xrange(KEYS.heartbeats)
    r.xgroup_setid(KEYS.heartbeats, GROUP_LIVENESS, "0")
    w.step()
    assert len(entries) == 5
    assert membership_changes(r, KEYS) == before
    assert r.xpending(KEYS.heartbeats, GROUP_LIVENESS)["pending"] == 0


def test_two_replicas_emit_each_change_once(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    s = settings(redis_url, tmp_path, 1.0, 2.0)
    members = [new_uuid() for _ in range(50)]
    for m in members:
        HeartbeatProducer(r, uuid=m, name=m[:8], interval_s=1).beat()
    start(threads, redis_url, store, s, "w1")
    start(threads, redis_url, store, s, "w2")
    wait_for(lambda: all(state(r, m) == "dead" for m in members), timeout_s=15, what="all dead")
    changes = membership_changes(r, KEYS)
    for m in members:
        assert [c.to_state.value for c in changes if c.uuid == m] == [
            "active",
            "inactive",
            "dead",
        ], [
            (c.to_state.value, c.at_ms - c.last_seen_ms, c.at_ms % 100000, c.reason)
            for c in changes
            if c.uuid == m
        ]


LATE_WAKE_MS = 300  # well under the 500 ms the bug this guards against would give


def test_deadline_is_exact_beyond_the_block_cap(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    """considerInactive 2.5 s is longer than one blocking read (2 s): the worker must still
    wake at the member's deadline, not at the next multiple of the cap (that would be 0.5 s
    late for the dead turn, 1.5 s for the inactive one). A loaded CI machine wakes a thread
    up to about 0.2 s late (one run: 156 ms), so each turn may be 0.3 s late."""
    s = settings(redis_url, tmp_path, 2.5, 3.5)
    member = new_uuid()
    HeartbeatProducer(r, uuid=member, name="once", interval_s=1).beat()
    start(threads, redis_url, store, s, "w1")
    wait_for(lambda: state(r, member) == "dead", timeout_s=10, what="dead")
    turns = {c.to_state.value: c for c in membership_changes(r, KEYS, member)}
    inactive, dead = turns["inactive"], turns["dead"]
    assert 0 <= inactive.at_ms - inactive.last_seen_ms - 2500 <= LATE_WAKE_MS
    assert 0 <= dead.at_ms - dead.last_seen_ms - 3500 <= LATE_WAKE_MS


def test_a_worker_behind_the_stream_judges_silence_only_as_far_as_it_read(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    s = settings(redis_url, tmp_path, 0.3, 0.6)
    w = LivenessWorker(r, store, s, consumer="w1", batch=5)
    member = new_uuid()
    producer = HeartbeatProducer(r, uuid=member, name="steady", interval_s=0.05)
    producer.beat()
    w.step()
    assert state(r, member) == "active"
    # the scenario: the worker falls behind while the member keeps heartbeating; after
    # 1 s (more than considerDead) about 20 heartbeats wait unread, read 5 per step
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        producer.beat()
        time.sleep(0.05)
    while r.xpending(KEYS.heartbeats, GROUP_LIVENESS)["pending"] or _unread(r):
        w.step()
    assert [c.to_state.value for c in membership_changes(r, KEYS, member)] == ["active"]
    assert state(r, member) == "active"


def _unread(r: redis.Redis) -> bool:
    last = r.xinfo_stream(KEYS.heartbeats)["last-generated-id"]
    (group,) = r.xinfo_groups(KEYS.heartbeats)
    return bool(group["last-delivered-id"] != last)


@pytest.mark.parametrize("failed_over", [False, True])
def test_a_view_read_on_another_redis_server_restarts_the_grace(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str, failed_over: bool
) -> None:
    """Each pass checks which server it reads: the view last read on another one (a
    failover to a replica, or a restart) restarts the grace rule, so members silent through
    the outage are not declared dead at once; on the same server a member silent past
    considerDead is dead at once. redis-py reconnects silently, so no error is needed."""
    s = settings(redis_url, tmp_path, 0.3, 0.6)
    w = LivenessWorker(r, store, s, consumer="w1")
    member = new_uuid()
    HeartbeatProducer(r, uuid=member, name="quiet", interval_s=1).beat()
    w.step()
    assert state(r, member) == "active"
    assert r.get(KEYS.view_server) == server_run_id(r).encode()
    last_seen_ms = view.read_observations(r, KEYS, [member])[0].last_seen_ms
    assert last_seen_ms is not None
    wait_for(lambda: server_time_ms(r) > last_seen_ms + 700, what="silent past considerDead")
    if failed_over:  # what the view looks like on a promoted replica: read on another server
        r.set(KEYS.view_server, "0" * 40)
    w.step()
    if not failed_over:
        assert state(r, member) == "dead"
        return
    started_ms = int(r.get(KEYS.view_started) or 0)
    assert started_ms > last_seen_ms + 700
    assert state(r, member) == "inactive"
    assert r.get(KEYS.view_server) == server_run_id(r).encode()
    while state(r, member) != "dead":
        w.step()
    dead = membership_changes(r, KEYS, member)[-1]
    assert dead.to_state.value == "dead" and dead.at_ms >= started_ms + 600


def test_a_redis_user_without_info_runs_without_the_server_check(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A production ACL may not allow INFO: the worker then says once that failovers will
    not restart the grace rule, and goes on deciding liveness."""
    r.acl_setuser(
        "qwc-noinfo",
        enabled=True,
        passwords=["+s3cret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-info"],
    )
    pool = r.connection_pool
    limited = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "username": "qwc-noinfo", "password": "s3cret"},
        )
    )
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            limited.info("server")
        s = settings(redis_url, tmp_path, 0.3, 0.6)
        w = LivenessWorker(limited, store, s, consumer="w1")
        member = new_uuid()
        HeartbeatProducer(r, uuid=member, name="quiet", interval_s=1).beat()
        with caplog.at_level(logging.ERROR, logger="workers.liveness.worker"):
            w.step()
            assert state(r, member) == "active"
            while state(r, member) != "dead":
                w.step()
        assert caplog.text.count("allow INFO for this Redis user (ACL +info)") == 1
        assert r.get(KEYS.view_server) is None
    finally:
        limited.close()
        r.acl_deluser("qwc-noinfo")
