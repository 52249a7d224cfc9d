"""Connecting to a real Redis Cluster (three masters) and a real Sentinel-watched primary:
the project's pipelines, streams and scripts on the cluster, whose clock is read on the node
owning the ``{prefix}`` slot; the member's RQ Redis beside a cluster; a sentinel client that
follows a failover. Each topology is started once for the module; the failover runs last
(it kills the primary), and the other sentinel test does not depend on which server is it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from schemas.settings import Settings
from tests.cluster import wait_for
from tests.redis_topologies import RedisCluster3, SentinelSet
from workers.bus.connect import connect, rq_redis_url_for, shares_rq_redis
from workers.bus.embedded import EmbeddedRedis
from workers.bus.future import dead_letter_future
from workers.bus.streams import (
    ack,
    decode_entries,
    ensure_group,
    entry_ms,
    publish,
    read_group,
    server_time_ms,
)
from workers.liveness.view import read_clock

MEMBER = "6b3a1c2d-1e4f-4a5b-8c9d-0e1f2a3b4c5d"


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    with RedisCluster3.start(tmp_path_factory.mktemp("redis-cluster")) as started:
        yield started


@pytest.fixture
def cluster_client(redis_cluster: RedisCluster3) -> Iterator[redis.Redis]:
    """A ``connect()`` client on the cluster, every node flushed first."""
    for port in redis_cluster.ports:
        node = redis_cluster.node(port)
        node.flushall()
        node.close()
    client = connect(redis_cluster.url, client_name="qwc-test-cluster")
    try:
        yield client
    finally:
        client.close()


def _keyslot(cluster: RedisCluster3, key: str) -> int:
    node = cluster.node(cluster.ports[0])
    try:
        return int(node.execute_command("CLUSTER", "KEYSLOT", key))
    finally:
        node.close()


def _owner_port(cluster: RedisCluster3, key: str) -> int:
    """The port of the master serving ``key``'s slot, as the cluster itself says."""
    slot = _keyslot(cluster, key)
    node = cluster.node(cluster.ports[0])
    try:
        ranges = node.execute_command("CLUSTER", "SLOTS")
    finally:
        node.close()
    for first, last, master, *_ in ranges:
        if int(first) <= slot <= int(last):
            return int(master[1])
    raise AssertionError(f"slot {slot} is not served")


def _node_time_ms(cluster: RedisCluster3, port: int) -> int:
    node = cluster.node(port)
    try:
        seconds, micros = node.time()
    finally:
        node.close()
    return int(seconds) * 1000 + int(micros) // 1000


def _time_calls(cluster: RedisCluster3) -> dict[int, int]:
    """How many TIME commands each node has served (INFO commandstats)."""
    calls = {}
    for port in cluster.ports:
        node = cluster.node(port)
        try:
            stats = node.info("commandstats")
        finally:
            node.close()
        calls[port] = int(stats.get("cmdstat_time", {}).get("calls", 0))
    return calls


def _every_key(keys: Keys) -> list[str]:
    fixed = [name for name, value in vars(Keys).items() if isinstance(value, property)]
    per_member = [keys.commands, keys.takeover_attempt, keys.recovery_attempt]
    names = [getattr(keys, name) for name in fixed] + [key(MEMBER) for key in per_member]
    assert set(keys.all_streams()) <= set(names)
    return names


def _beat(seq: int) -> Heartbeat:
    return Heartbeat(uuid=MEMBER, name="member", seq=seq, started_at_ms=1, sent_at_ms=2)


# --- Redis Cluster -----------------------------------------------------------------------


def test_cluster_runs_pipelines_streams_and_the_clock_script(cluster_client: redis.Redis) -> None:
    r, keys = cluster_client, Keys()
    assert isinstance(r, RedisCluster)
    assert r.ping() is True
    pipe = r.pipeline(transaction=False)
    pipe.set(keys.view_started, 1)
    pipe.hset(keys.view_state, MEMBER, "active")
    pipe.zadd(keys.view_seen, {MEMBER: 5})
    pipe.incr(keys.remote_exec_round_robin)
    pipe.hget(keys.view_state, MEMBER)
    assert pipe.execute() == [True, 1, 1, 1, b"active"]
    r.delete(keys.view_started)

    ensure_group(r, keys.heartbeats, "liveness")
    ids = [publish(r, keys.heartbeats, _beat(seq)) for seq in (1, 2, 3)]
    entries = read_group(r, keys.heartbeats, "liveness", "c1", count=10, block_ms=100)
    assert [entry_id for entry_id, _ in entries] == ids
    assert [d.message for d in decode_entries(entries)] == [_beat(1), _beat(2), _beat(3)]
    ack(r, keys.heartbeats, "liveness", [entry_id for entry_id, _ in entries])
    assert r.xpending(keys.heartbeats, "liveness")["pending"] == 0

    first = read_clock(r, keys, 600)
    assert first.view_created is True
    assert first.view_started_ms == first.now_ms
    r.zadd(keys.view_watch, {MEMBER: first.now_ms - 1_000})
    second = read_clock(r, keys, 600)
    assert (second.view_created, second.view_started_ms) == (False, first.now_ms)
    assert second.candidates == [MEMBER]
    assert entry_ms(ids[-1]) <= second.now_ms <= server_time_ms(r)


def test_cluster_repairs_future_heartbeats_in_one_slot(cluster_client: redis.Redis) -> None:
    """The future-id repair script (two keys, TIME, XINFO, XSETID, XGROUP SETID) runs on the
    node owning the ``{qwc}`` slot."""
    r, keys = cluster_client, Keys()
    ensure_group(r, keys.heartbeats, "liveness")
    publish(r, keys.heartbeats, _beat(1))
    future_id = f"{server_time_ms(r) + 3_600_000}-0".encode()
    r.xadd(keys.heartbeats, {MESSAGE_FIELD: encode(_beat(2))}, id=future_id)
    read_group(r, keys.heartbeats, "liveness", "c1", count=10, block_ms=None)
    repair = dead_letter_future(r, keys, keys.heartbeats, now_ms=server_time_ms(r))
    assert repair.dead_lettered == [future_id] and repair.set_back_to is not None
    later = publish(r, keys.heartbeats, _beat(3))
    assert later is not None and entry_ms(later) <= server_time_ms(r)
    entries = read_group(r, keys.heartbeats, "liveness", "c1", count=10, block_ms=None)
    assert [e for e, _ in entries] == [later]


def test_cluster_clock_is_the_node_owning_the_prefix_slot(
    redis_cluster: RedisCluster3, cluster_client: redis.Redis
) -> None:
    owner = _owner_port(redis_cluster, "{qwc}")
    other_owner = _owner_port(redis_cluster, "{other}")
    assert owner != other_owner  # so the two clients below must ask different nodes
    other_client = connect(redis_cluster.url, prefix="other")
    from_settings = connect(Settings(redis_url=redis_cluster.url, redis_prefix="other"))
    try:
        for client, port in (
            (cluster_client, owner),
            (other_client, other_owner),
            (from_settings, other_owner),
        ):
            before = _node_time_ms(redis_cluster, port)
            now_ms = server_time_ms(client)
            after = _node_time_ms(redis_cluster, port)
            assert before <= now_ms <= after
            calls = _time_calls(redis_cluster)
            server_time_ms(client)
            added = {p: n - calls[p] for p, n in _time_calls(redis_cluster).items()}
            assert added == {p: int(p == port) for p in redis_cluster.ports}
    finally:
        other_client.close()
        from_settings.close()


def test_keys_of_one_prefix_live_in_one_slot_on_one_node(
    redis_cluster: RedisCluster3, cluster_client: redis.Redis
) -> None:
    names = _every_key(Keys("qwc"))
    pipe = cluster_client.pipeline(transaction=False)
    for name in names:
        pipe.set(name, b"x")
    assert pipe.execute() == [True] * len(names)
    assert {_keyslot(redis_cluster, name) for name in names} == {_keyslot(redis_cluster, "qwc")}
    owner = _owner_port(redis_cluster, "{qwc}")
    sizes = {}
    for port in redis_cluster.ports:
        node = redis_cluster.node(port)
        sizes[port] = node.dbsize()
        node.close()
    assert sizes == {p: len(names) if p == owner else 0 for p in redis_cluster.ports}
    assert _keyslot(redis_cluster, Keys("other").heartbeats) != _keyslot(redis_cluster, "qwc")


def test_rq_redis_beside_a_cluster(redis_cluster: RedisCluster3, tmp_path: Path) -> None:
    home = tmp_path / "home"
    on_cluster = Settings(redis_url=redis_cluster.url, home_dir=home)
    try:
        url = rq_redis_url_for(on_cluster)
        assert url.startswith("unix://")
        assert url == EmbeddedRedis(home).url()
        assert shares_rq_redis(on_cluster) is False
        rq = connect(url)
        try:
            assert rq.info("cluster")["cluster_enabled"] == 0
            assert rq.set("rq:probe", 1) is True
        finally:
            rq.close()
    finally:
        assert EmbeddedRedis(home).stop() is True

    rq_url = "redis+sentinel://127.0.0.1:1/rq"
    configured = Settings(redis_url=redis_cluster.url, rq_redis_url=rq_url, home_dir=home)
    assert rq_redis_url_for(configured) == rq_url
    assert shares_rq_redis(configured) is True
    assert EmbeddedRedis(home).url() is None  # not started again
    standalone = Settings(redis_url="redis://127.0.0.1:1/0", home_dir=home)
    assert rq_redis_url_for(standalone) == "redis://127.0.0.1:1/0"
    assert shares_rq_redis(standalone) is True


# --- Redis Sentinel ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    with SentinelSet.start(tmp_path_factory.mktemp("sentinel"), down_after_ms=500) as started:
        yield started


def _plain(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)


def test_sentinel_client_reaches_the_primary(sentinel_set: SentinelSet) -> None:
    client = connect(sentinel_set.url, client_name="qwc-test-sentinel")
    key = f"probe:{uuid.uuid4()}"
    try:
        assert client.set(key, b"v") is True
        assert client.get(key) == b"v"
        assert client.info("replication")["role"] == "master"
        primary_port = sentinel_set.current_primary_port()
        assert client.info("server")["tcp_port"] == primary_port
        assert client.client_getname() == "qwc-test-sentinel"
    finally:
        client.delete(key)
        client.close()
    direct = _plain(primary_port)
    try:
        assert direct.info("replication")["role"] == "master"
    finally:
        direct.close()


def test_sentinel_client_follows_a_failover(sentinel_set: SentinelSet) -> None:
    """Kills the primary: keep this test last in the module."""
    client = connect(sentinel_set.url)
    try:
        assert client.set("before", b"1") is True
        assert sentinel_set.current_primary_port() == sentinel_set.primary_port
        sentinel_set.primary.kill()
        sentinel_set.primary.wait(10)
        failures: list[redis.ConnectionError] = []

        def write_lands() -> bool:
            try:
                return bool(client.set("after", b"2"))
            except redis.ConnectionError as exc:  # the old primary, or no primary yet
                failures.append(exc)
                return False

        wait_for(write_lands, timeout_s=30, every_s=0.05, what="a write after the failover")
        assert failures, "the first write after the kill should have failed"
        assert sentinel_set.current_primary_port() == sentinel_set.replica_port
        assert client.info("server")["tcp_port"] == sentinel_set.replica_port
    finally:
        client.close()
    former_replica = _plain(sentinel_set.replica_port)
    try:
        assert former_replica.info("replication")["role"] == "master"
        assert former_replica.get("after") == b"2"
    finally:
        former_replica.close()
