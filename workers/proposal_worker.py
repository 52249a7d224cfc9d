"""The loop shared by the takeover and recovery workers: proposals about dead members.

Such a worker reads two streams in its consumer group: the membership stream (a member
turned dead -> publish a proposal, at most one per member per ``sleep``, when the policy
allows it; a policy skip is recorded) and its own proposal stream. A proposal is held,
unacknowledged, until it is due (``delay`` after the death); then the worker checks again
that the member is still dead (back, or heard since -> ``cancelled``, recorded) and hands
it to the subclass's :meth:`ProposalWorker.decide`. A proposal whose holder died is
reclaimed by another replica (XAUTOCLAIM) once idle longer than the delay. Every heartbeat
interval it also proposes for dead members that still need it (an attempt after ``sleep``,
or a death it did not see), unless an attempt is in flight.

Subclasses (:class:`workers.takeover.worker.TakeoverWorker`,
:class:`workers.recovery.worker.RecoveryWorker`) say which stream and keys they use, who is
eligible, which dead members still need a proposal, how an outcome is recorded, and what
a due proposal does.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, cast

import redis
from redis.client import Pipeline

from schemas.codec import decode_as
from schemas.errors import DecodeError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import MembershipChange, MemberState
from schemas.settings import Settings
from workers.bus.connect import BLOCK_MS_MAX
from workers.bus.propose import Proposal, new_proposal, publish_once_per_sleep
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
from workers.proposal_decide import (
    HELD_RECHECK_MS,
    cancel_reason,
    candidates,
    check_at_ms,
    guard_holds,
)
from workers.store import Store
from workers.takeover.decide import Candidate, guard_reason

__all__ = [
    "CHANGES_RECLAIM_MS",
    "RECLAIM_MARGIN_MS",
    "Held",
    "ProposalWorker",
    "candidates_from_view",
]

log = logging.getLogger(__name__)

RECLAIM_MARGIN_MS = 1_000  # a proposal idle for delay + this had a holder that died
CHANGES_RECLAIM_MS = 5_000  # a membership change idle this long had a holder that died


@dataclass
class Held(Generic[Proposal]):
    """A proposal this replica holds, unacknowledged, until it is due and decided."""

    entry_id: bytes
    proposal: Proposal
    next_check_ms: int
    held_logged: bool = False


def candidates_from_view(snap: view.ViewSnapshot, jobs_owned: dict[str, int]) -> list[Candidate]:
    """Every member the view knows, as candidates to receive a dead member's jobs or
    retries: state, last seen, and from its last heartbeat passive, tags, running (pure;
    see :func:`workers.proposal_decide.candidates`)."""
    return candidates(snap.states, snap.seen_ms, view.decode_heartbeats(snap.info), jobs_owned)


class ProposalWorker(ABC, Generic[Proposal]):
    """One replica of a worker deciding proposals about dead members."""

    what: str  # "takeover", "recovery": log lines start with "<what> worker"
    kind: type[Proposal]
    group: str

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        settings: Settings,
        *,
        consumer: str,
        delay_s: float,
        sleep_s: float,
        stop: threading.Event | None = None,
    ) -> None:
        self.redis = client
        self.store = store
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.consumer = consumer
        self.stop = stop or threading.Event()
        self.delay_ms = round(delay_s * 1000)
        self.sleep_ms = round(sleep_s * 1000)
        self.scan_every_ms = max(100, round(settings.heartbeat_interval_s * 1000))
        self.dead_ms = round(settings.heartbeat_consider_dead_s * 1000)
        self.held: dict[bytes, Held[Proposal]] = {}
        self._next_scan_ms = 0
        self._prepared = Prepared(self.prepare)

    # -- what a subclass says ------------------------------------------------------------

    @property
    @abstractmethod
    def stream(self) -> str:
        """The proposal stream."""

    @abstractmethod
    def attempt_key(self, member_uuid: str) -> str:
        """The key that allows one attempt per member per ``sleep``."""

    @property
    @abstractmethod
    def enabled(self) -> bool:
        """Whether the feature is on (off: nothing is proposed, skips are not recorded)."""

    @property
    @abstractmethod
    def policy(self) -> str:
        """The policy named in proposals and audit rows."""

    @abstractmethod
    def eligible(self, dead_uuid: str) -> tuple[bool, str]:
        """Whether a dead member may get a proposal, and why (for logs and the audit)."""

    @abstractmethod
    def needing(self, dead_uuids: list[str]) -> list[str]:
        """Of these dead members, those that still need a proposal (the periodic scan)."""

    @abstractmethod
    def decide(self, held: Held[Proposal], snap: view.ViewSnapshot, now_ms: int) -> None:
        """Act on a due proposal whose member is still dead; end with :meth:`finish` or
        :meth:`forget` (or keep holding it, with ``held.next_check_ms`` moved on)."""

    @abstractmethod
    def record_outcome(
        self,
        *,
        proposal_id: str,
        dead_uuid: str,
        policy: str,
        proposed_ms: int,
        due_ms: int,
        now_ms: int,
        outcome: str,
        detail: str,
    ) -> None:
        """Write the audit row of a decision that changed nothing (cancelled, skipped, …)."""

    def on_dead(self, dead_uuids: list[str], now_ms: int) -> None:
        """Called with members that turned dead (a membership change), and with every dead
        member on each scan, whether or not the worker is enabled. Default: nothing."""

    def on_forget(self, pipe: Pipeline, held: Held[Proposal]) -> None:
        """Queue on ``pipe`` what else goes when a proposal is done: its entry in the
        guard's held list."""
        pipe.hdel(self.keys.takeover_held, held.proposal.id)

    # -- the mass-failure guard, shared by every kind of proposal ------------------------

    def guarded(self, held: Held[Proposal], members: list[Candidate], now_ms: int) -> bool:
        """True when the mass-failure guard holds the proposal (then it is kept, checked
        again every :data:`HELD_RECHECK_MS`, recorded ``held`` once, and listed in
        ``{qwc}:takeover:held``) until ``qwc takeover release`` or the members come back."""
        p = held.proposal
        reason = guard_reason(
            members, p.last_seen_ms, self.dead_ms, self.settings.mass_failure_fraction
        )
        released_ms = int(self.redis.get(self.keys.takeover_released) or 0)
        if reason is None or not guard_holds(reason, released_ms, p.proposed_at_ms):
            return False
        if not held.held_logged:
            log.warning("member %s: %s %s held: %s", p.dead_uuid, self.what, p.id, reason)
            self.redis.hset(self.keys.takeover_held, p.id, reason)
            self.record(p, now_ms, "held", reason)
            emit_held(self.redis, self.keys, self.what, p, reason=reason, now_ms=now_ms)
            held.held_logged = True
        held.next_check_ms = now_ms + HELD_RECHECK_MS
        # still ours: reset its idle time so no other replica reclaims it meanwhile
        self.redis.xclaim(self.stream, self.group, self.consumer, 0, [held.entry_id], justid=True)
        return True

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
        for held in sorted(self.held.values(), key=lambda h: h.proposal.due_at_ms):
            if check_at_ms(held.proposal.due_at_ms, held.next_check_ms) <= now_ms:
                self._check(held, now_ms)

    def _wait_ms(self, now_ms: int) -> int:
        times = [check_at_ms(h.proposal.due_at_ms, h.next_check_ms) for h in self.held.values()]
        times.append(self._next_scan_ms)
        return max(0, min(BLOCK_MS_MAX, min(times) - now_ms))

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
                self.on_dead([change.uuid], change.at_ms)
                self.propose(change.uuid, change.at_ms, change.last_seen_ms)
        ack(self.redis, self.keys.membership, self.group, [e[0] for e in entries])

    def _on_proposals(self, entries: list[Any]) -> None:
        bad = []
        for entry_id, fields in entries:
            proposal = self._decode(self.stream, entry_id, fields, self.kind)
            if proposal is None:
                bad.append(entry_id)
            elif entry_id not in self.held:
                self.held[entry_id] = Held(entry_id, proposal, 0)
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

    def propose(self, dead_uuid: str, at_ms: int, last_seen_ms: int) -> bool:
        """Publish a proposal for ``dead_uuid`` (dead at ``at_ms``, last heard at
        ``last_seen_ms``, Redis ms) if it is eligible and had no attempt within ``sleep``.
        An ineligible member's skip is recorded while the feature is enabled."""
        ok, why = self.eligible(dead_uuid)
        if not ok:
            if self.enabled:  # a policy skip is worth recording
                self.record_outcome(
                    proposal_id=f"skip-{dead_uuid}-{at_ms}",
                    dead_uuid=dead_uuid,
                    policy=self.policy,
                    proposed_ms=at_ms,
                    due_ms=at_ms,
                    now_ms=at_ms,
                    outcome="skipped",
                    detail=why,
                )
                log.info("member %s: %s skipped: %s", dead_uuid, self.what, why)
            return False
        proposal = new_proposal(
            self.kind,
            dead_uuid=dead_uuid,
            policy=self.policy,
            proposed_at_ms=at_ms,
            delay_ms=self.delay_ms,
            last_seen_ms=last_seen_ms,
        )
        return publish_once_per_sleep(
            self.redis,
            proposal,
            attempt_key=self.attempt_key(dead_uuid),
            stream=self.stream,
            sleep_ms=self.sleep_ms,
        )

    def _reclaim(self) -> None:
        """Proposals and changes a dead replica held longer than it could have legitimately."""
        _, proposals = autoclaim(
            self.redis,
            self.stream,
            self.group,
            self.consumer,
            min_idle_ms=self.delay_ms + RECLAIM_MARGIN_MS,
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
        for h in self.held.values():
            pipe.set(self.attempt_key(h.proposal.dead_uuid), h.proposal.id, px=self.sleep_ms)
        pipe.execute()

    def _scan(self, now_ms: int) -> None:
        """Propose for dead members that still need it (retries after sleep, missed deaths)."""
        states = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.view_state))
        dead = [u.decode() for u, s in states.items() if s == b"dead"]
        if not dead:
            return
        self.on_dead(dead, now_ms)
        if not self.enabled:
            return
        due = [u for u in self.needing(dead) if self.eligible(u)[0]]
        for o in view.read_observations(self.redis, self.keys, due):
            if not self.redis.exists(self.attempt_key(o.uuid)):
                self.propose(o.uuid, now_ms, o.last_seen_ms or 0)

    def _check(self, held: Held[Proposal], now_ms: int) -> None:
        """A due proposal: cancelled when its member is back or was heard since, else decided."""
        p = held.proposal
        snap = view.read_snapshot(self.redis, self.keys)
        state, seen = snap.states.get(p.dead_uuid), snap.seen_ms.get(p.dead_uuid, 0)
        reason = cancel_reason(state, seen, p.last_seen_ms)
        if reason is not None:
            self.finish(held, now_ms, "cancelled", reason)
            return
        self.decide(held, snap, now_ms)

    def finish(self, held: Held[Proposal], now_ms: int, outcome: str, detail: str) -> None:
        """Record a decision that changed nothing, and be done with the proposal."""
        self.record(held.proposal, now_ms, outcome, detail)
        p = held.proposal
        log.info("member %s: %s %s %s: %s", p.dead_uuid, self.what, p.id, outcome, detail)
        self.forget(held)

    def record(self, p: Proposal, now_ms: int, outcome: str, detail: str) -> None:
        """The audit row of proposal ``p`` for a decision that changed nothing (yet)."""
        self.record_outcome(
            proposal_id=p.id,
            dead_uuid=p.dead_uuid,
            policy=p.policy,
            proposed_ms=p.proposed_at_ms,
            due_ms=p.due_at_ms,
            now_ms=now_ms,
            outcome=outcome,
            detail=detail,
        )

    def forget(self, held: Held[Proposal]) -> None:
        """Tell of the decision (its event, from the audit row: also when a redelivered
        proposal finds it made before), acknowledge the proposal and stop holding it."""
        emit_decided(self.redis, self.keys, self.store, self.what, held.proposal.id)
        pipe = self.redis.pipeline(transaction=False)
        ack(self.redis, self.stream, self.group, [held.entry_id], pipeline=pipe)
        self.on_forget(pipe, held)
        pipe.execute()
        self.held.pop(held.entry_id, None)
