"""The liveness view on the replay's virtual clock.

It applies the liveness worker's pure rules (:mod:`workers.liveness.rules`: ``decide``,
``next_deadline_ms``, ``heard_may_change``, ``membership_change``) the way
:mod:`workers.liveness.view` applies them in Redis: a heartbeat's time is its entry id,
the last-seen time only grows (``ZADD GT``), a change is applied to the state it was
decided from (compare-and-set: in one process it always holds), and the grace rule counts
from the view's start. Instead of the worker's sweep, each member not yet dead has one
timer at (or before) its next deadline; when it fires, the member is decided at that exact
time, so a silent member turns inactive and dead at ``last_seen + considerInactive`` /
``+ considerDead``. ``tests/test_liveness_parity.py`` runs generated traces through both
and compares every change and deadline.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.messages import Heartbeat, MembershipChange, MemberState
from workers.liveness.rules import (
    MemberObservation,
    Thresholds,
    decide,
    heard_may_change,
    membership_change,
    next_deadline_ms,
)
from workers.replay.clock import DEADLINE, Timers

__all__ = ["VirtualView"]


class VirtualView:
    """Members' states, last-seen times and last heartbeats at the virtual time.

    ``on_change`` receives every state change, as the liveness worker appends it to the
    membership stream (reason ``heartbeat`` or ``silence``, ``at_ms`` the virtual time).
    ``exhaustive`` decides every heartbeat; otherwise, like the worker, a heartbeat that
    cannot change its member's state is not decided (``heard_may_change``: an active
    member of age 0; tests compare both ways).
    """

    def __init__(
        self,
        th: Thresholds,
        view_started_ms: int,
        timers: Timers,
        on_change: Callable[[MembershipChange], None],
        *,
        exhaustive: bool = False,
    ) -> None:
        self.th = th
        self.view_started_ms = view_started_ms
        self.timers = timers
        self.on_change = on_change
        self.exhaustive = exhaustive
        self.states: dict[str, MemberState] = {}
        self.seen: dict[str, int] = {}
        self.info: dict[str, Heartbeat] = {}
        self._seeded_names: dict[str, str] = {}
        self.known_since: dict[str, int] = {}
        self._timed: set[str] = set()  # members with a deadline timer in the heap
        self.last_heartbeat_ms = 0  # the newest heartbeat replayed: the last observation

    def seed(
        self, uuid: str, state: MemberState, last_seen_ms: int, name: str, now_ms: int
    ) -> None:
        """Start from a state the membership stream recorded before the replay's start."""
        self.states[uuid] = state
        if last_seen_ms:
            self.seen[uuid] = last_seen_ms
        else:
            self.known_since[uuid] = now_ms
        if name:
            self._seeded_names[uuid] = name
        self._timed.add(uuid)  # decided at the start: the rule may disagree with the seed
        self.timers.at(now_ms, DEADLINE, uuid)

    def watch(self, uuid: str, known_since_ms: int) -> None:
        """Watch a member the store knows but the view never heard (seed_unseen)."""
        if uuid not in self.states and uuid not in self.seen:
            self.known_since[uuid] = known_since_ms
            self._schedule(uuid, known_since_ms)

    def heartbeat(self, hb: Heartbeat, ms: int) -> None:
        """A heartbeat with entry time ``ms`` (the virtual now)."""
        self.last_heartbeat_ms = ms
        uuid = hb.uuid
        seen = self.seen.get(uuid)
        if seen is None or seen < ms:  # ZADD GT
            self.seen[uuid] = seen = ms
        self.info[uuid] = hb
        if self.exhaustive or heard_may_change(self.states.get(uuid), seen, ms, self.th):
            self._decide(uuid, ms, "heartbeat")
        if uuid not in self._timed:
            self._schedule(uuid, ms)

    def on_deadline(self, uuid: str, now_ms: int) -> None:
        """The member's deadline timer fired at ``now_ms``: decide it, schedule the next."""
        self._timed.discard(uuid)
        self._decide(uuid, now_ms, "silence")
        self._schedule(uuid, now_ms)

    def restart(self, at_ms: int) -> None:
        """The view restarted its grace at ``at_ms`` (read on another Redis server): nobody
        turns dead before considerDead after it. Pending deadline timers re-decide then."""
        self.view_started_ms = at_ms

    def state(self, uuid: str) -> MemberState | None:
        return self.states.get(uuid)

    def name(self, uuid: str) -> str:
        """The member's name: from its last heartbeat, else from its seeded state."""
        hb = self.info.get(uuid)
        return hb.name if hb is not None else self._seeded_names.get(uuid, "")

    def names(self) -> dict[str, str]:
        """Every known member's name, by uuid."""
        return {u: self.name(u) for u in sorted(set(self.info) | set(self._seeded_names))}

    def _decide(self, uuid: str, now_ms: int, reason: str) -> None:
        obs = MemberObservation(
            uuid, self.states.get(uuid), self.seen.get(uuid), self.known_since.get(uuid)
        )
        for t in decide((obs,), now_ms, self.view_started_ms, self.th):
            self.states[uuid] = t.to_state
            self.on_change(membership_change(t, at_ms=now_ms, name=self.name(uuid), reason=reason))

    def _schedule(self, uuid: str, now_ms: int) -> None:
        if uuid in self._timed:
            return
        deadline = next_deadline_ms(
            self.seen.get(uuid),
            now_ms,
            self.view_started_ms,
            self.th,
            self.known_since.get(uuid),
        )
        if deadline is not None:
            self._timed.add(uuid)
            self.timers.at(deadline, DEADLINE, uuid)
