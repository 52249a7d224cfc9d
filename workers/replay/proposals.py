"""Takeover and recovery proposals on the replay's virtual clock.

What :class:`workers.proposal_worker.ProposalWorker` and its two subclasses do, with the
same pure decisions: a member turned dead gets a proposal of each kind when the policy
allows it (:func:`workers.takeover.decide.eligible`, :func:`workers.recovery.decide.eligible`;
a policy skip is recorded while the feature is on) and no attempt of that kind was made
within ``sleep``; the proposal is due ``delay`` later; then it is cancelled when the member
is back or heard since (:func:`workers.proposal_decide.cancel_reason`), held by the
mass-failure guard (:func:`~workers.takeover.decide.guard_reason`,
:func:`~workers.proposal_decide.guard_holds`; checked again every second until the
recorded ``qwc takeover release``), or planned (:func:`~workers.takeover.decide.plan_takeover`,
:func:`~workers.recovery.decide.plan_recovery`). The workers' periodic scan is a timer at
the end of each attempt window: a member still dead that still needs it (owns jobs, has
running executions) is proposed again then.

Proposal ids are derived from the kind, the member and the time, so the seeded choices
(Random policy) are the same on every replay. A held proposal is looked at again every
second, as the workers do, but only on the ticks that follow a change that could free it
(a state change, the release): the others would find it held again. An attempt window
ends ``sleep`` after the
proposal was decided: the workers keep the attempt key alive while a proposal is in
flight, refreshing it every heartbeat interval (so the live window may end up to one
interval earlier).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.messages import MembershipChange, MemberState, RecoveryProposal, TakeoverProposal
from schemas.settings import Settings
from workers.bus.propose import new_proposal
from workers.proposal_decide import HELD_RECHECK_MS, cancel_reason, candidates, guard_holds
from workers.recovery import decide as recovery
from workers.replay.clock import DUE, WINDOW_END, Timers
from workers.replay.events import Event, iso_ms
from workers.replay.liveness import VirtualView
from workers.replay.ownership import Ownership, running_executions
from workers.replay.records import ExecutionRecord
from workers.takeover import decide as takeover
from workers.takeover.decide import Candidate

__all__ = ["VirtualProposals", "proposal_id"]

_NAMESPACE = uuidlib.UUID("5b0c7f1e-2d43-4b8a-9c61-0e7a3f9d2b54")
_DEAD = MemberState.DEAD


def proposal_id(what: str, member_uuid: str, at_ms: int) -> str:
    """The replay's id of a ``what`` proposal for a member at ``at_ms``: the same every time."""
    return uuidlib.uuid5(_NAMESPACE, f"{what}:{member_uuid}:{at_ms}").hex


def _next_tick(checked_ms: int, at_ms: int) -> int:
    """The first recheck of a held proposal (every HELD_RECHECK_MS after its last check,
    ``checked_ms``) at or after ``at_ms``."""
    ticks = max(1, -(-(at_ms - checked_ms) // HELD_RECHECK_MS))
    return checked_ms + ticks * HELD_RECHECK_MS


def _ranked(what: str, key: str) -> str:
    """A timer's key: at the same millisecond, takeovers come before recoveries."""
    return f"{0 if what == 'takeover' else 1}:{key}"


def _new_proposal(what: str, **fields: Any) -> TakeoverProposal | RecoveryProposal:
    if what == "takeover":
        return new_proposal(TakeoverProposal, **fields)
    return new_proposal(RecoveryProposal, **fields)


@dataclass(frozen=True)
class _Kind:
    what: str  # "takeover" or "recovery"
    enabled: bool
    policy: str
    delay_ms: int
    sleep_ms: int
    eligible: Callable[[str, Settings], tuple[bool, str]]


@dataclass
class _InFlight:
    kind: _Kind
    proposal: TakeoverProposal | RecoveryProposal
    held_logged: bool = False


class VirtualProposals:
    """The takeover and recovery workers' decisions, fed by the view's state changes."""

    def __init__(
        self,
        settings: Settings,
        view: VirtualView,
        ownership: Ownership,
        executions: dict[str, ExecutionRecord],
        timers: Timers,
        emit: Callable[[Event], None],
        *,
        released_ms: int = 0,
    ) -> None:
        self.settings = settings
        self.view = view
        self.ownership = ownership
        self.executions = executions
        self.timers = timers
        self.emit = emit
        self.released_ms = released_ms
        self.dead_ms = round(settings.heartbeat_consider_dead_s * 1000)
        self.kinds = {
            "takeover": _Kind(
                "takeover",
                settings.autotakeover_enabled,
                settings.autotakeover_policy.value,
                round(settings.autotakeover_delay_s * 1000),
                round(settings.autotakeover_sleep_s * 1000),
                takeover.eligible,
            ),
            "recovery": _Kind(
                "recovery",
                settings.recover_enabled,
                settings.recover_policy.value,
                round(settings.recover_delay_s * 1000),
                round(settings.recover_sleep_s * 1000),
                recovery.eligible,
            ),
        }
        self.attempt_until: dict[str, int] = {}  # "<what>:<uuid>" -> end of its window
        self.inflight: dict[str, _InFlight] = {}  # proposal id -> proposal
        self.busy: dict[str, str] = {}  # "<what>:<uuid>" -> proposal in flight
        self.wake: dict[str, int] = {}  # proposal id -> its next check (a DUE timer)
        self.parked: dict[str, tuple[str, int]] = {}  # held: id -> (timer key, last check)
        self._version = 0  # bumped by every state change and commit: candidates change
        self._members: tuple[tuple[int, str, int], list[Candidate]] | None = None
        self.recovered_at: dict[str, int] = {}  # member -> time its running were recovered

    # -- what starts a proposal ----------------------------------------------------------

    def on_change(self, change: MembershipChange) -> None:
        """A state change of the view: a member turned dead gets its proposals; held ones
        are checked again on their next tick."""
        self._version += 1
        for pid, (key, checked_ms) in list(self.parked.items()):
            self._wake(pid, key, _next_tick(checked_ms, change.at_ms))
        if change.to_state is _DEAD:
            for kind in self.kinds.values():
                self.propose(kind, change.uuid, change.at_ms, change.last_seen_ms)

    def propose(
        self, kind: _Kind, uuid: str, at_ms: int, last_seen_ms: int, *, by: str = "death"
    ) -> None:
        """Propose ``kind`` for ``uuid`` (``by`` a death, or the periodic ``scan``)."""
        ok, why = kind.eligible(uuid, self.settings)
        if not ok:
            if kind.enabled:  # the workers record a policy skip only while the feature is on
                self._decided(kind, uuid, at_ms, f"skip-{uuid}-{at_ms}", "skipped", why)
            return
        key = f"{kind.what}:{uuid}"
        if key in self.busy:
            reason = f"{kind.what} proposal {self.busy[key][:8]} is in flight"
            self._emit(at_ms, "not_proposed", uuid, what=kind.what, reason=reason)
            return
        if self.attempt_until.get(key, -1) > at_ms:
            until = iso_ms(self.attempt_until[key])
            reason = f"an attempt within {kind.what} sleep (window ends {until})"
            self._emit(at_ms, "not_proposed", uuid, what=kind.what, reason=reason)
            return
        p = _new_proposal(
            kind.what,
            dead_uuid=uuid,
            policy=kind.policy,
            proposed_at_ms=at_ms,
            delay_ms=kind.delay_ms,
            last_seen_ms=last_seen_ms,
            proposal_id=proposal_id(kind.what, uuid, at_ms),
        )
        self.attempt_until[key] = at_ms + kind.sleep_ms
        self.inflight[p.id] = _InFlight(kind, p)
        self.busy[key] = p.id
        self._wake(p.id, _ranked(kind.what, p.id), p.due_at_ms)
        self._emit(
            at_ms,
            "proposed",
            uuid,
            what=kind.what,
            proposal=p.id,
            due_at_ms=p.due_at_ms,
            last_seen_ms=last_seen_ms,
            by=by,
        )

    def on_window_end(self, timer_key: str, now_ms: int) -> None:
        """The periodic scan at the end of an attempt window: propose again if needed."""
        key = timer_key.partition(":")[2]
        if key in self.busy or self.attempt_until.get(key, 0) > now_ms:
            return  # a later window is open
        what, uuid = key.split(":", 1)
        kind = self.kinds[what]
        if not kind.enabled or self.view.state(uuid) is not _DEAD:
            return
        if self._needs(kind, uuid, now_ms) and kind.eligible(uuid, self.settings)[0]:
            self.propose(kind, uuid, now_ms, self.view.seen.get(uuid, 0), by="scan")

    # -- a due proposal --------------------------------------------------------------------

    def on_due(self, key: str, now_ms: int) -> None:
        """A proposal's due timer (key from :func:`_ranked`) fired at ``now_ms``."""
        pid = key.partition(":")[2]
        if self.wake.get(pid) != now_ms:
            return  # replaced by an earlier check
        del self.wake[pid]
        self.parked.pop(pid, None)
        f = self.inflight[pid]
        p = f.proposal
        reason = cancel_reason(
            self.view.state(p.dead_uuid), self.view.seen.get(p.dead_uuid, 0), p.last_seen_ms
        )
        if reason is not None:
            self._finish(f, now_ms, "cancelled", reason)
            return
        members = self._candidates(f.kind.what, now_ms)
        guard = takeover.guard_reason(
            members, p.last_seen_ms, self.dead_ms, self.settings.mass_failure_fraction
        )
        released_ms = self.released_ms if now_ms >= self.released_ms else 0
        if guard is not None and guard_holds(guard, released_ms, p.proposed_at_ms):
            if not f.held_logged:
                self._decided(f.kind, p.dead_uuid, now_ms, p.id, "held", guard)
                f.held_logged = True
            self.parked[pid] = (key, now_ms)
            if now_ms < self.released_ms:
                self._wake(pid, key, _next_tick(now_ms, self.released_ms))
            return
        if f.kind.what == "takeover":
            self._takeover(f, members, len(self.ownership.owned(p.dead_uuid, now_ms)), now_ms)
        else:
            self._recovery(f, members, now_ms)

    def _takeover(self, f: _InFlight, members: list[Candidate], n_jobs: int, now_ms: int) -> None:
        p = f.proposal
        plan = takeover.plan_takeover(members, p.dead_uuid, n_jobs, self.settings, seed=p.id)
        if plan.outcome != "commit":
            self._finish(f, now_ms, plan.outcome, plan.detail)
            return
        moved = self.ownership.move(p.dead_uuid, plan.quotas, now_ms)
        self._version += 1
        jobs = [{"job": job, "name": self.ownership.jobs[job].name, "to": to} for job, to in moved]
        destinations = dict(plan.quotas)
        self._finish(
            f,
            now_ms,
            "committed",
            f"{len(jobs)} job(s) moved",
            destinations=destinations,
            jobs=jobs,
        )

    def _recovery(self, f: _InFlight, members: list[Candidate], now_ms: int) -> None:
        p = f.proposal
        running = running_executions(
            p.dead_uuid, self._running(p.dead_uuid), self.executions, self.ownership.jobs
        )
        plan = recovery.plan_recovery(
            proposal_id=p.id,
            dead_uuid=p.dead_uuid,
            running=running,
            waiting=0,  # scheduled executions are not in the streams
            members=members,
            now_ms=now_ms,
        )
        if plan.outcome != "commit":
            self._finish(f, now_ms, plan.outcome, plan.detail)
            return
        self.recovered_at[p.dead_uuid] = now_ms
        retries = [
            {
                "execution": eid,
                "job": r.job_id,
                "to": r.member_uuid,
                "retry_execution": r.id,
                "attempt": r.attempt,
                "not_before_ms": r.fire_ms,
            }
            for eid, r in sorted(plan.retries.items())
        ]
        destinations: dict[str, int] = {}
        for r in plan.retries.values():
            destinations[r.member_uuid] = destinations.get(r.member_uuid, 0) + 1
        detail = f"{len(plan.mark)} execution(s) marked incomplete, {len(retries)} retried"
        self._finish(
            f,
            now_ms,
            "committed",
            detail,
            marked=list(plan.mark),
            retries=retries,
            destinations=dict(sorted(destinations.items())),
        )

    def _finish(self, f: _InFlight, now_ms: int, outcome: str, detail: str, **extra: Any) -> None:
        p = f.proposal
        self._decided(f.kind, p.dead_uuid, now_ms, p.id, outcome, detail, **extra)
        key = f"{f.kind.what}:{p.dead_uuid}"
        del self.inflight[p.id]
        self.busy.pop(key, None)
        # the attempt key was kept alive while the proposal was in flight
        self.attempt_until[key] = max(self.attempt_until.get(key, 0), now_ms + f.kind.sleep_ms)
        self.timers.at(self.attempt_until[key], WINDOW_END, _ranked(f.kind.what, key))

    # -- helpers ---------------------------------------------------------------------------

    def _candidates(self, what: str, now_ms: int) -> list[Candidate]:
        """The view's members as candidates (jobs owned for a takeover), built once per
        millisecond while nothing changes: many proposals may be checked at once."""
        key = (now_ms, what, self._version)
        if self._members is None or self._members[0] != key:
            owned = self.ownership.counts(now_ms) if what == "takeover" else {}
            self._members = (
                key,
                candidates(self.view.states, self.view.seen, self.view.info, owned),
            )
        return self._members[1]

    def _wake(self, pid: str, key: str, at_ms: int) -> None:
        """Check proposal ``pid`` at ``at_ms`` unless it is checked earlier already."""
        if self.wake.get(pid, at_ms + 1) > at_ms:
            self.wake[pid] = at_ms
            self.timers.at(at_ms, DUE, key)

    def _needs(self, kind: _Kind, uuid: str, now_ms: int) -> bool:
        """What the workers' scan asks: still owns jobs / still has running executions."""
        if kind.what == "takeover":
            return bool(self.ownership.owned(uuid, now_ms))
        return bool(self._running(uuid))

    def _running(self, uuid: str) -> tuple[str, ...]:
        """The member's running executions: its last heartbeat's, unless recovered since."""
        hb = self.view.info.get(uuid)
        if hb is None or self.view.seen.get(uuid, 0) <= self.recovered_at.get(uuid, -1):
            return ()
        return hb.running

    def _decided(
        self, kind: _Kind, uuid: str, at_ms: int, pid: str, outcome: str, detail: str, **extra: Any
    ) -> None:
        self._emit(
            at_ms,
            "decided",
            uuid,
            what=kind.what,
            proposal=pid,
            outcome=outcome,
            detail=detail,
            **extra,
        )

    def _emit(self, at_ms: int, kind: str, uuid: str, **data: Any) -> None:
        self.emit(Event(at_ms, kind, uuid, self.view.name(uuid), data))
