"""Replay a recording through the workers' decisions, on a clock taken from the entries.

The heartbeats are fed in entry id order to :class:`workers.replay.liveness.VirtualView`
(the liveness worker's rules); its state changes feed
:class:`workers.replay.proposals.VirtualProposals` (the takeover and recovery workers'
decisions). Before each entry, every timer due before its time fires at its own time
(:mod:`workers.replay.clock`); after the last, the clock runs on to the recording's end.
Nothing here reads Redis, SQL or a clock: the same recording and settings give the same
timeline.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.codec import decode_many
from schemas.messages import Heartbeat, MembershipChange, RemoteCommand, ViewRestart
from schemas.settings import Settings
from workers.gcpause import gc_paused
from workers.liveness.rules import Thresholds
from workers.replay.clock import DEADLINE, VIEW_RESTART, WINDOW_END, Timers
from workers.replay.events import Event
from workers.replay.fileformat import Recording
from workers.replay.liveness import VirtualView
from workers.replay.ownership import Ownership
from workers.replay.proposals import VirtualProposals
from workers.replay.records import Block, RecordingHeader

__all__ = ["DECODE_SLICE", "ReplayResult", "replay"]

# Heartbeats decoded per decode_many call: a few hundred keep the decoded objects in the
# CPU caches; 10,000 at a time (a whole block) is about 1.6x slower.
DECODE_SLICE = 512


@dataclass
class ReplayResult:
    """The timeline of the window (``events``, in time order) and what was replayed."""

    header: RecordingHeader
    settings: Settings
    events: list[Event] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    heartbeats: int = 0  # heartbeat entries replayed (warm-up included)
    bad_entries: int = 0  # entries the liveness worker would dead-letter


def replay(rec: Recording, settings: Settings, *, exhaustive: bool = False) -> ReplayResult:
    """Replay ``rec`` under ``settings``. ``exhaustive``: decide every heartbeat, as the
    worker does (slower; the same result)."""
    return _Run(rec, settings, exhaustive).result


class _Run:
    """One replay: the view and the proposals on one heap of timers."""

    def __init__(self, rec: Recording, settings: Settings, exhaustive: bool) -> None:
        h = rec.header
        self.result = ReplayResult(h, settings)
        self.timers = Timers()
        th = Thresholds.from_seconds(
            settings.heartbeat_consider_inactive_s, settings.heartbeat_consider_dead_s
        )
        started, restarts = _view_starts(rec)
        self.view = VirtualView(th, started, self.timers, self.on_change, exhaustive=exhaustive)
        self.proposals = VirtualProposals(
            settings,
            self.view,
            Ownership(rec.snapshot.jobs, h.start_ms),
            {e.id: e for e in rec.snapshot.executions},
            self.timers,
            self.emit,
            released_ms=h.released_ms,
        )
        for prior in rec.snapshot.prior:
            self.view.seed(prior.uuid, prior.state, prior.last_seen_ms, prior.name, h.start_ms)
        for uuid, since_ms in sorted(rec.snapshot.unheard.items()):
            self.view.watch(uuid, max(since_ms, started))
        for at_ms in restarts:
            self.timers.at(at_ms, VIEW_RESTART, "")
        self._restarts = restarts  # not yet applied, oldest first
        self._held: list[tuple[int, str]] = []
        with gc_paused():  # millions of short-lived objects, no cycles
            _feed(rec, self.view, self.advance, self.timers.heap, self.result)
        self.advance(h.until_ms + 1)
        heard = self.view.names()
        self.result.events = _merged(self.result.events, _command_events(rec, heard))
        self.result.names = _names(rec, heard)

    def emit(self, e: Event) -> None:
        """Keep the events of the window (the warm-up is replayed, not shown)."""
        if self.result.header.since_ms <= e.at_ms <= self.result.header.until_ms:
            self.result.events.append(e)

    def on_change(self, c: MembershipChange) -> None:
        self.emit(_state_event(c))
        self.proposals.on_change(c)

    def advance(self, until_ms: int) -> None:
        """Fire every timer due before ``until_ms``, each at its own time.

        A view restart (a Redis failover) before ``until_ms`` ends an observation gap: no
        entry lies between the last heartbeat and it, as nothing could be written while no
        server answered, and the live workers decided nothing then. Timers in that gap are
        held and fire at the restart's time, after it, as the first live pass on the new
        server decides them."""
        heap = self.timers.heap
        while heap and heap[0][0] < until_ms:
            at_ms, kind, key = heapq.heappop(heap)
            if kind == VIEW_RESTART:
                self._restart(at_ms)
            elif self._in_gap(at_ms, until_ms):
                self._held.append((kind, key))
            else:
                self._fire(at_ms, kind, key)

    def _in_gap(self, at_ms: int, until_ms: int) -> bool:
        restarts = self._restarts
        return bool(restarts and restarts[0] < until_ms and self.view.last_heartbeat_ms < at_ms)

    def _restart(self, at_ms: int) -> None:
        self._restarts.pop(0)
        self.view.restart(at_ms)
        held, self._held = self._held, []
        for kind, key in held:
            self._fire(at_ms, kind, key)

    def _fire(self, at_ms: int, kind: int, key: str) -> None:
        if kind == DEADLINE:
            self.view.on_deadline(key, at_ms)
        elif kind == WINDOW_END:
            self.proposals.on_window_end(key, at_ms)
        else:
            self.proposals.on_due(key, at_ms)


def _view_starts(rec: Recording) -> tuple[int, list[int]]:
    """The view's start at the recording's start, and the restarts after it (the view read
    on another Redis server: ``view-restarts``). Without restarts in the recording, the
    header's ``view_started_ms`` (the key when recorded), else the recording's start."""
    h = rec.header
    restarts = sorted(
        ms for ms, msg in _decoded(rec.streams.get("view-restarts", [])) if type(msg) is ViewRestart
    )
    before = [ms for ms in restarts if ms <= h.start_ms]
    inside = [ms for ms in restarts if ms > h.start_ms]
    if before:
        return before[-1], inside
    if inside:  # the start before the first restart is unknown: long past
        return 0, inside
    return (h.view_started_ms if h.view_started_ms is not None else h.start_ms), []


def _feed(
    rec: Recording,
    view: VirtualView,
    advance: Callable[[int], None],
    heap: list[tuple[int, int, str]],
    result: ReplayResult,
) -> None:
    """Every heartbeat in id order; before each, the timers due before its time."""
    heartbeat = view.heartbeat
    for block in rec.heartbeat_blocks():
        for i in range(0, len(block), DECODE_SLICE):
            times = block.ms[i : i + DECODE_SLICE]
            for ms, msg in zip(times, decode_many(block.raw[i : i + DECODE_SLICE]), strict=True):
                if heap and heap[0][0] < ms:
                    advance(ms)
                if type(msg) is Heartbeat:
                    heartbeat(msg, ms)
                else:
                    result.bad_entries += 1
        result.heartbeats += len(block)


def _state_event(c: MembershipChange) -> Event:
    return Event(
        c.at_ms,
        "state",
        c.uuid,
        c.name,
        {
            "from": c.from_state.value if c.from_state else None,
            "to": c.to_state.value,
            "last_seen_ms": c.last_seen_ms,
            "reason": c.reason,
        },
    )


def _command_events(rec: Recording, names: dict[str, str]) -> list[Event]:
    """Remote commands seen on the members' command streams within the window."""
    h = rec.header
    out = []
    for stream in sorted(s for s in rec.streams if s.startswith("commands:")):
        for ms, msg in _decoded(rec.streams[stream]):
            if isinstance(msg, RemoteCommand) and h.since_ms <= ms <= h.until_ms:
                data = {
                    "command": msg.id,
                    "action": msg.action.value,
                    "job": msg.job_id,
                    "execution": msg.execution_id,
                    "expires_at_ms": msg.expires_at_ms,
                }
                out.append(
                    Event(ms, "command", msg.target_uuid, names.get(msg.target_uuid, ""), data)
                )
    return sorted(out, key=lambda e: e.at_ms)


def _decoded(blocks: Iterable[Block]) -> Iterable[tuple[int, object]]:
    for block in blocks:
        yield from zip(block.ms, decode_many(block.raw), strict=True)


def _merged(engine: list[Event], commands: list[Event]) -> list[Event]:
    """Both in time order; at the same millisecond the workers' events come first."""
    return list(heapq.merge(engine, commands, key=lambda e: e.at_ms))


def _names(rec: Recording, heard: dict[str, str]) -> dict[str, str]:
    names = {m.uuid: m.name for m in rec.snapshot.members if m.name}
    names.update({p.uuid: p.name for p in rec.snapshot.prior if p.name})
    names.update(heard)
    return dict(sorted(names.items()))
