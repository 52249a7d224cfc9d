"""One view, two stores: the liveness rules applied in Redis (the worker's view: ``ZADD GT``,
the sweep's watch index, the compare-and-set Lua, what each replica knows of the view) and
in memory (the replay's ``VirtualView`` on its timers) give the same state changes at the
same milliseconds, on generated traces with gaps, deaths, returns and view restarts.

The Redis side runs for real: heartbeats are added to the stream with their trace ids, and
liveness workers (one, or two replicas sharing the consumer group, restarted now and then)
step on the trace's clock (``LivenessWorker(clock=...)``, ``step(block=False)``): at every
heartbeat, and at the next deadline a worker computed, as the live worker wakes. A view
restart (the view read on another Redis server) is a pass that finds another server's
``run_id``; like the replay, no pass runs between the last heartbeat before it and it
(nothing answered then).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from schemas.codec import decode_as
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat, MemberState
from schemas.settings import Settings
from tests.cluster import membership_changes
from workers.liveness import view
from workers.liveness.info import same_content
from workers.liveness.rules import Thresholds, next_deadline_ms
from workers.liveness.worker import LivenessWorker
from workers.replay.engine import replay
from workers.replay.fileformat import read_recording
from workers.replay.settings import replay_settings
from workers.replay.synthetic import Silence, TraceSpec, member_uuid, random_silences, write_trace
from workers.store import Store

KEYS = Keys()
CM = "qwcontrol.clusterMode."
SETTINGS = {
    CM + "heartbeat.considerInactive": "0.6",
    CM + "heartbeat.considerDead": "1.2",
    CM + "heartbeat.delay": "0",
}
MEMBERS, INTERVAL_S, DURATION_S = 5, 0.2, 9.0  # heartbeats on a 40 ms grid


def _trace(seed: int, *extra: Silence, **spec: object) -> TraceSpec:
    silences = random_silences(
        MEMBERS,
        DURATION_S - 1,
        seed=seed,
        gaps=6,
        gap_s=(0.2, 2.0),  # shorter than considerInactive, between, past considerDead
        deaths=2,
        returns=1,
        return_after_s=(0.3, 3.0),
    )
    return TraceSpec(
        members=MEMBERS,
        interval_s=INTERVAL_S,
        duration_s=DURATION_S,
        silences=silences + extra,
        seed=seed,
        settings=SETTINGS,
        **spec,  # type: ignore[arg-type]
    )


TRACES = {
    "gaps-deaths-returns": _trace(1),
    "other-seed": _trace(7),
    # member 2 (phase 80 ms) heard at 1.08 s, then again exactly considerInactive later
    "heard-again-at-the-boundary": _trace(3, Silence(2, 1.09, 1.68)),
    "view-restarts": _trace(5, view_restarts_s=(2.51, 6.05)),  # off the heartbeat grid
    # one member, silent past considerInactive, then past considerDead: with replicas in
    # turn, the one that hears it back has not seen the other turn it inactive or dead
    # (it reads that change in the same round trip as it records the heartbeat)
    "one-member-returns": TraceSpec(
        members=1,
        interval_s=INTERVAL_S,
        duration_s=DURATION_S,
        silences=(Silence(0, 1.01, 1.8), Silence(0, 4.01, 5.6)),
        settings=SETTINGS,
    ),
}


@dataclass(frozen=True)
class Run:
    """How the Redis side runs: replicas sharing the group, making the passes in turn
    (``alternate``) or in runs (a pass is made by a replica drawn anew with the chance
    ``switch``: the others fall behind), and a restart of a replica (a new worker: it
    knows nothing of the view) every ``restart_every`` passes."""

    replicas: int = 1
    alternate: bool = False
    switch: float = 0.1
    restart_every: int = 0


RUNS = {
    "one-worker": Run(),
    "two-replicas-in-runs-restarted": Run(replicas=2, restart_every=37),
    "two-replicas-in-turn": Run(replicas=2, alternate=True),
}

Change = tuple[int, str, str | None, str, int, str]  # at, member, from, to, last seen, reason


@pytest.mark.parametrize("run", RUNS.values(), ids=list(RUNS))
@pytest.mark.parametrize("spec", TRACES.values(), ids=list(TRACES))
def test_redis_and_memory_views_make_the_same_changes_at_the_same_times(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str, spec: TraceSpec, run: Run
) -> None:
    path = tmp_path / "trace.qwcrec"
    write_trace(path, spec)
    memory = _memory_changes(path)
    assert {c[3] for c in memory} >= {"inactive", "dead"}, "a trace that tests little"
    settings = Settings(
        redis_url=redis_url,
        home_dir=tmp_path,
        heartbeat_interval_s=INTERVAL_S,
        heartbeat_delay_s=0,
        heartbeat_consider_inactive_s=0.6,
        heartbeat_consider_dead_s=1.2,
    )
    side = RedisSide(r, store, settings, run, seed=spec.seed)
    side.play(path)
    assert _redis_changes(r) == memory
    _assert_same_final_view(r, side, path, memory)


def test_a_member_heard_again_exactly_at_considerInactive_stays_active(tmp_path: Path) -> None:
    """The boundary trace above does what it says: member 2 changes nothing then."""
    path = tmp_path / "trace.qwcrec"
    write_trace(path, TRACES["heard-again-at-the-boundary"])
    t0 = TRACES["heard-again-at-the-boundary"].start_ms
    m2 = member_uuid(3, 2)
    assert (t0 + 1080, t0 + 1680) in _gaps(path, m2)
    assert [c[3] for c in _memory_changes(path) if c[1] == m2] == ["active"]


def _memory_changes(path: Path) -> list[Change]:
    with read_recording(path) as rec:
        result = replay(rec, replay_settings(rec.header.settings))
    return [
        (e.at_ms, e.member, e.data["from"], e.data["to"], e.data["last_seen_ms"], e.data["reason"])
        for e in result.events
        if e.kind == "state"
    ]


def _redis_changes(r: redis.Redis) -> list[Change]:
    return [
        (
            c.at_ms,
            c.uuid,
            c.from_state.value if c.from_state else None,
            c.to_state.value,
            c.last_seen_ms,
            c.reason,
        )
        for c in membership_changes(r, KEYS)
    ]


class VirtualClock:
    """The trace's time (ms), as the workers' ``clock``."""

    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms


class RedisSide:
    """Liveness workers on real Redis, stepped on the trace's clock."""

    def __init__(self, r: redis.Redis, store: Store, settings: Settings, run: Run, seed: int):
        self.r, self.store, self.settings, self.run = r, store, settings, run
        self.clock = VirtualClock()
        self.rng = random.Random(seed)
        self.workers = [self._worker(i) for i in range(run.replicas)]
        self.passes = 0
        self.current = 0  # the replica making the passes
        self.last_heartbeat_ms = -1
        self.next_deadline_ms: int | None = None  # as the last pass computed it

    def _worker(self, i: int) -> LivenessWorker:
        return LivenessWorker(self.r, self.store, self.settings, consumer=f"w{i}", clock=self.clock)

    def play(self, path: Path) -> None:
        with read_recording(path) as rec:
            start_ms, until_ms = rec.header.start_ms, rec.header.until_ms
            restarts = sorted(b for blk in rec.streams.get("view-restarts", []) for b in blk.ms)
            beats = [
                (ms, seq, raw)
                for blk in rec.heartbeat_blocks()
                for ms, seq, raw in zip(blk.ms, blk.seq, blk.raw, strict=True)
            ]
        assert not set(restarts) & {ms for ms, _, _ in beats}, "a restart on a heartbeat"
        i = 0
        self._pass(start_ms)  # the view starts with the trace
        while True:
            next_hb = beats[i][0] if i < len(beats) else None
            deadline = self.next_deadline_ms
            restart = restarts[0] if restarts else None
            if (
                deadline is not None
                and restart is not None
                and self._held(deadline, restart, next_hb)
            ):
                deadline = None  # no pass between the last heartbeat and the restart
            at = min((t for t in (next_hb, deadline, restart) if t is not None), default=None)
            if at is None or at > until_ms:
                return
            if at == restart:
                restarts.pop(0)
                self.r.set(KEYS.view_server, "0" * 40)  # the view was read on another server
            while i < len(beats) and beats[i][0] == at:
                ms, seq, raw = beats[i]
                self.r.xadd(KEYS.heartbeats, {MESSAGE_FIELD: raw}, id=f"{ms}-{seq}")
                self.last_heartbeat_ms = ms
                i += 1
            self._pass(at)

    def _held(self, deadline: int | None, restart: int | None, next_hb: int | None) -> bool:
        """Like the replay: a deadline after the last heartbeat and before a view restart
        (with no heartbeat before it) is decided at the restart, not before."""
        if deadline is None or restart is None or (next_hb is not None and next_hb < restart):
            return False
        return self.last_heartbeat_ms < deadline < restart

    def _pass(self, at_ms: int) -> None:
        self.clock.now_ms = at_ms
        self.passes += 1
        if self.run.alternate:
            self.current = self.passes % len(self.workers)
        elif self.rng.random() < self.run.switch:
            self.current = self.rng.randrange(len(self.workers))
        k = self.current
        if self.run.restart_every and self.passes % self.run.restart_every == 0:
            self.workers[k] = self._worker(k)
        self.workers[k].step(block=False)
        self.next_deadline_ms = self.workers[k].next_deadline_ms  # any pass sweeps them all


def _gaps(path: Path, member: str) -> Iterator[tuple[int, int]]:
    """(last heartbeat, next heartbeat) of ``member``, for each pair."""
    return itertools.pairwise(_heartbeat_times(path).get(member, []))


def _heartbeat_times(path: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    with read_recording(path) as rec:
        for blk in rec.heartbeat_blocks():
            for ms, raw in zip(blk.ms, blk.raw, strict=True):
                out.setdefault(decode_as(raw, Heartbeat).uuid, []).append(ms)
    return out


def _assert_same_final_view(
    r: redis.Redis, side: RedisSide, path: Path, memory: Sequence[Change]
) -> None:
    """Each member's final state, last-seen time, stored heartbeat and next deadline."""
    snap = view.read_snapshot(r, KEYS)
    last_state = {c[1]: c[3] for c in memory}
    heard = _heartbeat_times(path)
    assert {u: s.value for u, s in snap.states.items()} == last_state
    assert snap.seen_ms == {u: times[-1] for u, times in heard.items()}
    stored = view.decode_heartbeats(snap.info)
    with read_recording(path) as rec:
        last_beat = {}
        for blk in rec.heartbeat_blocks():
            for raw in blk.raw:
                hb = decode_as(raw, Heartbeat)
                last_beat[hb.uuid] = hb
    assert all(same_content(stored[u], hb) for u, hb in last_beat.items())
    th = Thresholds(600, 1200)
    now_ms, started = side.clock.now_ms, snap.view_started_ms or 0
    for uuid, seen_ms in snap.seen_ms.items():
        deadline = next_deadline_ms(seen_ms, now_ms, started, th)
        if snap.states[uuid] is MemberState.DEAD:
            assert deadline is None
        else:
            assert deadline is not None and side.next_deadline_ms is not None
            assert side.next_deadline_ms <= deadline  # the workers wake by then
