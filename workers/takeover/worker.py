"""The takeover worker (``qwc worker takeover``): dead members' jobs move to live members.

It reads two streams in the consumer group ``takeover``: the membership stream (a member
turned dead -> publish a proposal, once per ``sleep``) and the takeover stream (proposals).
A proposal is held, unacknowledged, until it is due (``autotakeover.delay`` after the death);
then the worker checks again that the member is still dead (back -> cancelled), applies the
mass-failure guard, chooses destinations, and commits in one transaction keyed by the
proposal id. A proposal whose holder died is reclaimed by another replica (XAUTOCLAIM)
once idle longer than the delay. Every so often it also proposes for dead members that
still own jobs (an attempt after ``sleep``, or a death it did not see).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, cast

import redis

from schemas.codec import decode_as
from schemas.errors import DecodeError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import MembershipChange, MemberState, TakeoverProposal
from schemas.settings import Settings
from workers.bus.connect import BLOCK_MS_MAX
from workers.bus.retry import run_forever
from workers.bus.streams import (
    ack,
    autoclaim,
    dead_letter,
    ensure_group,
    read_by_deadline,
    server_time_ms,
)
from workers.liveness import view
from workers.store import Store, commit_takeover, count_jobs_by_owner, record_takeover_outcome
from workers.takeover.decide import Candidate, choose_quotas, eligible, guard_reason
from workers.takeover.propose import new_proposal, publish_once_per_sleep

__all__ = ["GROUP", "TakeoverWorker", "candidates_from_view"]

log = logging.getLogger(__name__)

GROUP = "takeover"
RECLAIM_MARGIN_MS = 1_000
HELD_RECHECK_MS = 1_000


@dataclass
class Held:
    entry_id: bytes
    proposal: TakeoverProposal
    next_check_ms: int
    held_logged: bool = False


def candidates_from_view(snap: view.ViewSnapshot, jobs_owned: dict[str, int]) -> list[Candidate]:
    """Every member the view knows, as takeover candidates (pure)."""
    heartbeats = view.decode_heartbeats(snap.info)
    out = []
    for uuid in sorted(set(snap.states) | set(snap.seen_ms)):
        hb = heartbeats.get(uuid)
        out.append(
            Candidate(
                uuid=uuid,
                state=snap.states.get(uuid),
                last_seen_ms=snap.seen_ms.get(uuid),
                passive=hb.passive if hb else False,
                tags=hb.tags if hb else (),
                running=len(hb.running) if hb else 0,
                jobs_owned=jobs_owned.get(uuid, 0),
            )
        )
    return out


class TakeoverWorker:
    """One replica of the takeover worker."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        settings: Settings,
        *,
        consumer: str,
        stop: threading.Event | None = None,
    ) -> None:
        self.redis = client
        self.store = store
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.consumer = consumer
        self.stop = stop or threading.Event()
        self.delay_ms = round(settings.autotakeover_delay_s * 1000)
        self.sleep_ms = round(settings.autotakeover_sleep_s * 1000)
        self.dead_ms = round(settings.heartbeat_consider_dead_s * 1000)
        self.scan_every_ms = max(100, round(settings.heartbeat_interval_s * 1000))
        self.held: dict[bytes, Held] = {}
        self._next_scan_ms = 0
        self._ready = False

    def run(self) -> None:
        """Run until ``stop`` is set; transient Redis/SQL errors are logged and retried."""
        log.info("takeover worker %s: starting", self.consumer)
        run_forever(self.step, stop=self.stop, what="takeover worker", logger=log)
        log.info("takeover worker %s: stopped", self.consumer)

    def prepare(self) -> None:
        """Create the groups; take back what this consumer held before a restart."""
        for stream in (self.keys.membership, self.keys.takeover):
            ensure_group(self.redis, stream, GROUP)
        self._read({self.keys.membership: "0", self.keys.takeover: "0"}, block_ms=None)
        self._ready = True

    def step(self) -> None:
        """One pass: read changes and proposals, reclaim and scan now and then, decide due ones."""
        if not self._ready:
            self.prepare()
        now_ms = server_time_ms(self.redis)
        fresh = {self.keys.membership: ">", self.keys.takeover: ">"}
        read_by_deadline(lambda block: self._read(fresh, block), self._wait_ms(now_ms), self.stop)
        now_ms = server_time_ms(self.redis)
        if now_ms >= self._next_scan_ms:
            self._reclaim()
            self._refresh_attempts()
            self._scan(now_ms)
            self._next_scan_ms = now_ms + self.scan_every_ms
        for held in sorted(self.held.values(), key=lambda h: h.proposal.due_at_ms):
            if max(held.proposal.due_at_ms, held.next_check_ms) <= now_ms:
                self._decide(held, now_ms)

    def _wait_ms(self, now_ms: int) -> int:
        times = [max(h.proposal.due_at_ms, h.next_check_ms) for h in self.held.values()]
        times.append(self._next_scan_ms)
        return max(0, min(BLOCK_MS_MAX, min(times) - now_ms))

    def _read(self, streams: dict[str, str], block_ms: int | None) -> bool:
        """Read and handle new entries of both streams; True when any came."""
        try:
            replies = cast(
                list[tuple[bytes, list[Any]]],
                self.redis.xreadgroup(
                    GROUP,
                    self.consumer,
                    dict(streams.items()),
                    count=100,
                    block=block_ms,  # type: ignore[arg-type]
                ),
            )
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            log.warning("takeover worker: consumer groups missing (Redis restarted?); recreating")
            self._ready = False
            return True  # nothing read, but do not wait: recreate the groups at once
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
                self._propose(change.uuid, change.at_ms, change.last_seen_ms)
        ack(self.redis, self.keys.membership, GROUP, [e[0] for e in entries])

    def _on_proposals(self, entries: list[Any]) -> None:
        bad = []
        for entry_id, fields in entries:
            proposal = self._decode(self.keys.takeover, entry_id, fields, TakeoverProposal)
            if proposal is None:
                bad.append(entry_id)
            elif entry_id not in self.held:
                self.held[entry_id] = Held(entry_id, proposal, 0)
        ack(self.redis, self.keys.takeover, GROUP, bad)

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

    def _propose(self, dead_uuid: str, at_ms: int, last_seen_ms: int) -> None:
        ok, why = eligible(dead_uuid, self.settings)
        policy = self.settings.autotakeover_policy.value
        if not ok:
            if self.settings.autotakeover_enabled:  # a policy skip is worth recording
                record_takeover_outcome(
                    self.store,
                    proposal_id=f"skip-{dead_uuid}-{at_ms}",
                    dead_uuid=dead_uuid,
                    policy=policy,
                    proposed_ms=at_ms,
                    due_ms=at_ms,
                    now_ms=at_ms,
                    outcome="skipped",
                    detail=why,
                )
                log.info("member %s: takeover skipped: %s", dead_uuid, why)
            return
        proposal = new_proposal(
            dead_uuid=dead_uuid,
            policy=policy,
            proposed_at_ms=at_ms,
            delay_ms=self.delay_ms,
            last_seen_ms=last_seen_ms,
        )
        publish_once_per_sleep(self.redis, self.keys, proposal, sleep_ms=self.sleep_ms)

    def _reclaim(self) -> None:
        """Proposals and changes a dead replica held longer than it could have legitimately."""
        _, proposals = autoclaim(
            self.redis,
            self.keys.takeover,
            GROUP,
            self.consumer,
            min_idle_ms=self.delay_ms + RECLAIM_MARGIN_MS,
            count=100,
        )
        if proposals:
            log.warning(
                "takeover worker: reclaimed %s proposal(s) of a dead replica", len(proposals)
            )
            self._on_proposals(proposals)
        _, changes = autoclaim(
            self.redis, self.keys.membership, GROUP, self.consumer, min_idle_ms=5_000, count=100
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
            pipe.set(
                self.keys.takeover_attempt(h.proposal.dead_uuid), h.proposal.id, px=self.sleep_ms
            )
        pipe.execute()

    def _scan(self, now_ms: int) -> None:
        """Propose for dead members that still own jobs (retries after sleep, missed deaths)."""
        if not self.settings.autotakeover_enabled:
            return
        states = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.view_state))
        dead = [u.decode() for u, s in states.items() if s == b"dead"]
        if not dead:
            return
        owned = count_jobs_by_owner(self.store)
        due = [u for u in dead if owned.get(u, 0) > 0 and eligible(u, self.settings)[0]]
        for o in view.read_observations(self.redis, self.keys, due):
            if not self.redis.exists(self.keys.takeover_attempt(o.uuid)):
                self._propose(o.uuid, now_ms, o.last_seen_ms or 0)

    def _decide(self, held: Held, now_ms: int) -> None:
        p = held.proposal
        snap = view.read_snapshot(self.redis, self.keys)
        state, seen = snap.states.get(p.dead_uuid), snap.seen_ms.get(p.dead_uuid, 0)
        if state is not MemberState.DEAD or seen > p.last_seen_ms:
            self._finish(held, now_ms, "cancelled", f"member is {state} again")
            return
        owned = count_jobs_by_owner(self.store)
        members = candidates_from_view(snap, owned)
        reason = guard_reason(
            members, p.last_seen_ms, self.dead_ms, self.settings.mass_failure_fraction
        )
        released_ms = int(self.redis.get(self.keys.takeover_released) or 0)
        if reason and released_ms < p.proposed_at_ms:
            self._hold(held, now_ms, reason)
            return
        if not owned.get(p.dead_uuid, 0):
            self._finish(held, now_ms, "skipped", "the member owns no scheduled jobs")
            return
        quotas = choose_quotas(
            members, p.dead_uuid, owned.get(p.dead_uuid, 0), self.settings, seed=p.id
        )
        if not quotas:
            self._finish(held, now_ms, "no_destination", "no active, non-passive member")
            return
        result = commit_takeover(
            self.store,
            proposal_id=p.id,
            dead_uuid=p.dead_uuid,
            policy=p.policy,
            proposed_ms=p.proposed_at_ms,
            due_ms=p.due_at_ms,
            now_ms=now_ms,
            quotas=quotas,
            with_jobs=False,  # counts are enough here; listing 100k jobs is not free
        )
        if result.committed:
            log.info(
                "member %s: takeover %s committed: %s job(s) to %s",
                p.dead_uuid,
                p.id,
                result.jobs_moved,
                result.destinations,
            )
        self._forget(held)

    def _hold(self, held: Held, now_ms: int, reason: str) -> None:
        if not held.held_logged:
            log.warning(
                "member %s: takeover %s held: %s", held.proposal.dead_uuid, held.proposal.id, reason
            )
            self.redis.hset(self.keys.takeover_held, held.proposal.id, reason)
            self._record(held.proposal, now_ms, "held", reason)
            held.held_logged = True
        held.next_check_ms = now_ms + HELD_RECHECK_MS
        # still ours: reset its idle time so no other replica reclaims it meanwhile
        self.redis.xclaim(self.keys.takeover, GROUP, self.consumer, 0, [held.entry_id], justid=True)

    def _record(self, p: TakeoverProposal, now_ms: int, outcome: str, detail: str) -> None:
        """The audit row of a proposal that was not committed (yet)."""
        record_takeover_outcome(
            self.store,
            proposal_id=p.id,
            dead_uuid=p.dead_uuid,
            policy=p.policy,
            proposed_ms=p.proposed_at_ms,
            due_ms=p.due_at_ms,
            now_ms=now_ms,
            outcome=outcome,
            detail=detail,
        )

    def _finish(self, held: Held, now_ms: int, outcome: str, detail: str) -> None:
        p = held.proposal
        self._record(p, now_ms, outcome, detail)
        log.info("member %s: takeover %s %s: %s", p.dead_uuid, p.id, outcome, detail)
        self._forget(held)

    def _forget(self, held: Held) -> None:
        pipe = self.redis.pipeline(transaction=False)
        ack(self.redis, self.keys.takeover, GROUP, [held.entry_id], pipeline=pipe)
        pipe.hdel(self.keys.takeover_held, held.proposal.id)
        pipe.execute()
        self.held.pop(held.entry_id, None)
