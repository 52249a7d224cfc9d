"""The proposal worker: the lifecycle driven with Redis and SQL, for one kind of proposal.

One replica reads two streams in its consumer group: the membership stream (a member
turned dead -> its :class:`~workers.proposals.lifecycle.Lifecycle` says whether to publish
a proposal, at most one per member per ``sleep``; a policy skip is recorded) and its own
proposal stream (a proposal read is held, unacknowledged, until it is due, ``delay`` after
the death). A due proposal is checked against the view (member back -> ``cancelled``),
the mass-failure guard, then handed to the kind, which plans and commits. A proposal whose
holder died is reclaimed by another replica (XAUTOCLAIM) once idle longer than the delay.
Every heartbeat interval, and when an attempt window it closed ends, the worker also
proposes for dead members that still need it (an attempt after ``sleep``, or a death it
did not see), unless an attempt is in flight.

What differs between takeover and recovery is a :class:`Kind` passed in
(:class:`workers.takeover.worker.TakeoverKind`, :class:`workers.recovery.worker.RecoveryKind`):
its rules (name, stream, keys, settings), who still needs a proposal, the candidates, the
audit row, and what a due proposal does.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Generic, Protocol, cast

import redis

from schemas.codec import decode_as
from schemas.errors import DecodeError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import MembershipChange, MemberState
from schemas.settings import Settings
from workers.bus.connect import BLOCK_MS_MAX
from workers.bus.retry import Prepared, run_forever
from workers.bus.streams import (
    ack,
    autoclaim,
    dead_letter,
    ensure_group,
    read_by_deadline,
    server_time_ms,
)
from workers.liveness import view
from workers.notify.emit import emit_decided, emit_held
from workers.proposals.candidates import Candidate
from workers.proposals.decide import guard_reason
from workers.proposals.lifecycle import (
    Action,
    CheckGuard,
    Decide,
    Done,
    Hold,
    Lifecycle,
    NotProposed,
    Proposal,
    Publish,
    Record,
    Rules,
    Tracked,
)
from workers.proposals.publish import publish_once_per_sleep
from workers.store import Store

__all__ = ["CHANGES_RECLAIM_MS", "RECLAIM_MARGIN_MS", "Decision", "Kind", "ProposalWorker"]

log = logging.getLogger(__name__)

RECLAIM_MARGIN_MS = 1_000  # a proposal idle for delay + this had a holder that died
CHANGES_RECLAIM_MS = 5_000  # a membership change idle this long had a holder that died


@dataclass(frozen=True)
class Decision:
    """What the kind did with a due proposal the guard let through: ``committed`` (the
    commit was made, or had been by another replica), or an outcome that changed nothing."""

    outcome: str
    detail: str = ""


class Kind(Protocol[Proposal]):
    """The part of a proposal worker that is the kind's own (takeover, recovery)."""

    @property
    def rules(self) -> Rules[Proposal]:
        """Name, message, stream, group, attempt keys, policy, delay, sleep, eligibility."""

    def needing(self, dead_uuids: list[str]) -> list[str]:
        """Of these dead members, those that still need a proposal (the periodic scan)."""

    def candidates(self, snap: view.ViewSnapshot) -> list[Candidate]:
        """The members, for the guard and the plan."""

    def decide(self, p: Proposal, members: list[Candidate], now_ms: int) -> Decision:
        """Plan a due proposal whose member is still dead, and commit it."""

    def final_outcome(self, p: Proposal) -> str | None:
        """The final outcome recorded for ``p`` already (None: none yet)."""

    def record(self, p: Proposal, now_ms: int, outcome: str, detail: str) -> None:
        """Write the audit row of a decision that changed nothing (cancelled, skipped, …)."""

    def on_dead(self, dead_uuids: list[str], now_ms: int) -> None:
        """Called with members that turned dead (a membership change), and with every dead
        member on each scan, whether or not the feature is enabled."""


class ProposalWorker(Generic[Proposal]):
    """One replica of a worker deciding proposals of one :class:`Kind` about dead members."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        settings: Settings,
        kind: Kind[Proposal],
        *,
        consumer: str,
        stop: threading.Event | None = None,
    ) -> None:
        self.redis = client
        self.store = store
        self.settings = settings
        self.kind: Kind[Proposal] = kind
        self.rules: Rules[Proposal] = kind.rules
        self.what = self.rules.what
        self.group = self.rules.group
        self.stream = self.rules.stream
        self.keys = Keys(settings.redis_prefix)
        self.consumer = consumer
        self.stop = stop or threading.Event()
        self.lifecycle: Lifecycle[bytes, Proposal] = Lifecycle(self.rules)
        self.scan_every_ms = max(100, round(settings.heartbeat_interval_s * 1000))
        self.dead_ms = round(settings.heartbeat_consider_dead_s * 1000)
        self._next_scan_ms = 0
        self._prepared = Prepared(self.prepare)

    @property
    def held(self) -> dict[bytes, Tracked[Proposal]]:
        """The proposals this replica holds, by stream entry id."""
        return self.lifecycle.tracked

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop`` is set; transient Redis/SQL errors are logged and retried."""
        log.info("%s worker %s: starting", self.what, self.consumer)
        run_forever(self.step, stop=self.stop, what=f"{self.what} worker", logger=log)
        log.info("%s worker %s: stopped", self.what, self.consumer)

    def prepare(self) -> None:
        """Create the groups; take back what this consumer held before a restart. Runs again
        after every transient error (a lost connection, a Redis restarted empty: ``NOGROUP``)."""
        for stream in (self.keys.membership, self.stream):
            ensure_group(self.redis, stream, self.group)
        self._read({self.keys.membership: "0", self.stream: "0"}, block_ms=None)

    def step(self) -> None:
        """One pass: read changes and proposals, reclaim and scan now and then, decide due ones."""
        self._prepared.run(self._step)

    def _step(self) -> None:
        now_ms = server_time_ms(self.redis)
        fresh = {self.keys.membership: ">", self.stream: ">"}
        read_by_deadline(lambda block: self._read(fresh, block), self._wait_ms(now_ms), self.stop)
        now_ms = server_time_ms(self.redis)
        if now_ms >= self._next_scan_ms:
            self._reclaim()
            self._refresh_attempts()
            self._scan(now_ms)
            self._next_scan_ms = now_ms + self.scan_every_ms
        for token in list(self.lifecycle.due_now(now_ms)):
            self._check(token, now_ms)

    def _wait_ms(self, now_ms: int) -> int:
        next_check_ms = self.lifecycle.next_check_ms()
        until_ms = (
            self._next_scan_ms if next_check_ms is None else min(self._next_scan_ms, next_check_ms)
        )
        return max(0, min(BLOCK_MS_MAX, until_ms - now_ms))

    def _read(self, streams: dict[str, str], block_ms: int | None) -> bool:
        """Read and handle new entries of both streams; True when any came."""
        replies = cast(
            list[tuple[bytes, list[Any]]],
            self.redis.xreadgroup(
                self.group,
                self.consumer,
                dict(streams.items()),
                count=100,
                block=block_ms,  # type: ignore[arg-type]
            ),
        )
        for stream, entries in replies or []:
            if stream.decode() == self.keys.membership:
                self._on_changes(entries)
            else:
                self._on_proposals(entries)
        return bool(replies)

    def _on_changes(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            change = self._decode(self.keys.membership, entry_id, fields, MembershipChange)
            if change is not None and change.to_state is MemberState.DEAD:
                self.kind.on_dead([change.uuid], change.at_ms)
                self._apply(self.lifecycle.dead(change.uuid, change.at_ms, change.last_seen_ms))
        ack(self.redis, self.keys.membership, self.group, [e[0] for e in entries])

    def _on_proposals(self, entries: list[Any]) -> None:
        bad = []
        for entry_id, fields in entries:
            proposal = self._decode(self.stream, entry_id, fields, self.rules.message)
            if proposal is None:
                bad.append(entry_id)
            else:
                self.lifecycle.claimed(entry_id, proposal)
        ack(self.redis, self.stream, self.group, bad)

    def _decode(self, stream: str, entry_id: bytes, fields: Any, kind: type[Any]) -> Any:
        raw = (fields or {}).get(MESSAGE_FIELD, b"")
        try:
            return decode_as(raw, kind)
        except DecodeError as exc:
            dead_letter(
                self.redis,
                self.keys,
                origin_stream=stream,
                entry_id=entry_id,
                raw=raw,
                reason=exc.reason,
            )
            return None

    def _reclaim(self) -> None:
        """Proposals and changes a dead replica held longer than it could have legitimately."""
        _, proposals = autoclaim(
            self.redis,
            self.stream,
            self.group,
            self.consumer,
            min_idle_ms=self.rules.delay_ms + RECLAIM_MARGIN_MS,
            count=100,
        )
        if proposals:
            log.warning(
                "%s worker: reclaimed %s proposal(s) of a dead replica", self.what, len(proposals)
            )
            self._on_proposals(proposals)
        _, changes = autoclaim(
            self.redis,
            self.keys.membership,
            self.group,
            self.consumer,
            min_idle_ms=CHANGES_RECLAIM_MS,
            count=100,
        )
        if changes:
            self._on_changes(changes)

    def _refresh_attempts(self) -> None:
        """A proposal in flight (waiting, held, or retried through an outage) keeps its
        member's attempt key alive, so no second attempt starts until ``sleep`` after it."""
        if not self.held:
            return
        pipe = self.redis.pipeline(transaction=False)
        for t in self.held.values():
            p = t.proposal
            pipe.set(self.rules.attempt_key(p.dead_uuid), p.id, px=self.rules.sleep_ms)
        pipe.execute()

    def _scan(self, now_ms: int) -> None:
        """Propose for dead members that still need it (retries after sleep, missed deaths)."""
        states = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.view_state))
        dead = [u.decode() for u, s in states.items() if s == b"dead"]
        if not dead:
            return
        # One script sets a member's state and emits its change: a death read above is on
        # the stream already. Take it from there first, so that its proposal counts from the
        # death (the change's time), not from this scan's.
        self._read({self.keys.membership: ">", self.stream: ">"}, block_ms=None)
        self.kind.on_dead(dead, now_ms)
        if not self.rules.enabled:
            return
        lc = self.lifecycle
        due = [u for u in self.kind.needing(dead) if lc.scan_may_propose(u, now_ms)]
        for o in view.read_observations(self.redis, self.keys, due):
            if not self.redis.exists(self.rules.attempt_key(o.uuid)):
                self._apply(lc.dead(o.uuid, now_ms, o.last_seen_ms or 0, by="scan"))

    def _check(self, token: bytes, now_ms: int) -> None:
        """A due proposal: cancelled when its member is back or was heard since, done when
        it was decided already, else the guard, then the kind's decision."""
        p = self.held[token].proposal
        snap = view.read_snapshot(self.redis, self.keys)
        state, seen_ms = snap.states.get(p.dead_uuid), snap.seen_ms.get(p.dead_uuid, 0)
        actions = self.lifecycle.due(token, now_ms, state, seen_ms)
        if not isinstance(actions[0], CheckGuard):
            self._apply(actions)
            return
        final = self.kind.final_outcome(p)
        if final is not None:  # delivered again after its decision
            self._apply(self.lifecycle.decided(token, now_ms, final))
            return
        members = self.kind.candidates(snap)
        reason = guard_reason(
            members, p.last_seen_ms, self.dead_ms, self.settings.mass_failure_fraction
        )
        released_ms = int(self.redis.get(self.keys.takeover_released) or 0)
        actions = self.lifecycle.guard(token, now_ms, reason, released_ms)
        if isinstance(actions[0], Decide):
            d = self.kind.decide(p, members, now_ms)
            if d.outcome == "committed":
                actions = self.lifecycle.committed(token, now_ms, d.detail)
            else:
                actions = self.lifecycle.failed(token, now_ms, d.outcome, d.detail)
        self._apply(actions)

    # -- carrying out the lifecycle's actions --------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Publish):
                self._publish(a.proposal)
            elif isinstance(a, NotProposed):
                log.debug("member %s: %s not proposed: %s", a.uuid, self.what, a.reason)
            elif isinstance(a, Record):
                self._record(a)
            elif isinstance(a, Hold):
                self._hold(a)
            elif isinstance(a, Done):
                self._done(a)

    def _publish(self, p: Proposal) -> None:
        key = self.rules.attempt_key(p.dead_uuid)
        if publish_once_per_sleep(
            self.redis, p, attempt_key=key, stream=self.stream, sleep_ms=self.rules.sleep_ms
        ):
            self.lifecycle.published(p)

    def _record(self, a: Record[Proposal]) -> None:
        self.kind.record(a.proposal, a.at_ms, a.outcome, a.detail)
        p = a.proposal
        if a.outcome == "skipped":
            log.info("member %s: %s skipped: %s", p.dead_uuid, self.what, a.detail)
        elif a.outcome != "held":
            log.info("member %s: %s %s %s: %s", p.dead_uuid, self.what, p.id, a.outcome, a.detail)

    def _hold(self, a: Hold[bytes, Proposal]) -> None:
        """Held by the mass-failure guard: listed in ``{qwc}:takeover:held`` and told of
        once, checked again every second until ``qwc takeover release`` or the members
        come back."""
        p = a.proposal
        if a.first:
            log.warning("member %s: %s %s held: %s", p.dead_uuid, self.what, p.id, a.reason)
            self.redis.hset(self.keys.takeover_held, p.id, a.reason)
            emit_held(self.redis, self.keys, self.what, p, reason=a.reason, now_ms=a.at_ms)
        # still ours: reset its idle time so no other replica reclaims it meanwhile
        self.redis.xclaim(self.stream, self.group, self.consumer, 0, [a.token], justid=True)

    def _done(self, a: Done[bytes, Proposal]) -> None:
        """Tell of the decision (its event, from the audit row: also when a redelivered
        proposal finds it made before), acknowledge the proposal and stop holding it; its
        member's attempt window ends ``sleep`` after now, when a scan looks again."""
        emit_decided(self.redis, self.keys, self.store, self.what, a.proposal.id)
        p = a.proposal
        pipe = self.redis.pipeline(transaction=False)
        ack(self.redis, self.stream, self.group, [a.token], pipeline=pipe)
        pipe.hdel(self.keys.takeover_held, p.id)
        pipe.set(self.rules.attempt_key(p.dead_uuid), p.id, px=a.window_end_ms - a.at_ms)
        pipe.execute()
        self._next_scan_ms = min(self._next_scan_ms, a.window_end_ms)
