"""Takeover and recovery proposals on the replay's virtual clock.

The workers' own lifecycle (:class:`workers.proposals.lifecycle.Lifecycle`, one per kind,
with the kinds' rules :func:`workers.takeover.decide.takeover_rules` and
:func:`workers.recovery.decide.recovery_rules`) driven by the view's state changes and the
replay's timers instead of Redis and SQL: a member turned dead gets a proposal of each
kind when the policy allows it and no attempt of that kind is open; the proposal is due
``delay`` later; then it is cancelled (member back or heard since), held by the
mass-failure guard (until the recorded ``qwc takeover release``), or planned
(:func:`~workers.takeover.decide.plan_takeover`, :func:`~workers.recovery.decide.plan_recovery`)
against the recording's jobs and executions. An attempt window ends ``sleep`` after the
proposal was decided, and a member still dead that still needs it (owns jobs, has running
executions) is proposed again then, as the workers' scan does.

Proposal ids are derived from the kind, the member and the time, so the seeded choices
(Random policy) are the same on every replay. A held proposal is looked at again on the
guard's one-second ticks, but only on those that follow a change that could free it (a
state change, the release): the others would find it held again.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from schemas.messages import MembershipChange, MemberState, RecoveryProposal, TakeoverProposal
from schemas.settings import Settings
from workers.proposals import HELD_RECHECK_MS, Candidate, candidates, guard_reason
from workers.proposals.lifecycle import (
    Action,
    CheckGuard,
    Decide,
    Done,
    Hold,
    Lifecycle,
    NotProposed,
    Publish,
    Record,
)
from workers.recovery import decide as recovery
from workers.replay.clock import DUE, WINDOW_END, Timers
from workers.replay.events import Event, iso_ms
from workers.replay.liveness import VirtualView
from workers.replay.ownership import Ownership, running_executions
from workers.replay.records import ExecutionRecord
from workers.takeover import decide as takeover

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
    return f"{_KINDS.index(what)}:{key}"


_KINDS = ("takeover", "recovery")  # by rank: at the same millisecond, takeovers first
_Lifecycle = Lifecycle[str, TakeoverProposal] | Lifecycle[str, RecoveryProposal]


class VirtualProposals:
    """The takeover and recovery workers' lifecycles, fed by the view's state changes."""

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
        self.lifecycles: dict[str, _Lifecycle] = {
            "takeover": Lifecycle(takeover.takeover_rules(settings), ids=proposal_id),
            "recovery": Lifecycle(recovery.recovery_rules(settings), ids=proposal_id),
        }
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
            for what in _KINDS:
                self.propose(what, change.uuid, change.at_ms, change.last_seen_ms)

    def propose(
        self, what: str, uuid: str, at_ms: int, last_seen_ms: int, *, by: str = "death"
    ) -> None:
        """Propose ``what`` for ``uuid`` (``by`` a death, or the periodic ``scan``)."""
        self._apply(what, at_ms, self.lifecycles[what].dead(uuid, at_ms, last_seen_ms, by=by))

    def on_window_end(self, timer_key: str, now_ms: int) -> None:
        """The periodic scan at the end of an attempt window: propose again if needed."""
        what, uuid = timer_key.partition(":")[2].split(":", 1)
        if not self.lifecycles[what].scan_may_propose(uuid, now_ms):
            return  # in flight, a later window is open, disabled or not eligible
        if self.view.state(uuid) is _DEAD and self._needs(what, uuid, now_ms):
            self.propose(what, uuid, now_ms, self.view.seen.get(uuid, 0), by="scan")

    # -- a due proposal --------------------------------------------------------------------

    def on_due(self, key: str, now_ms: int) -> None:
        """A proposal's due timer (key from :func:`_ranked`) fired at ``now_ms``."""
        rank, _, pid = key.partition(":")
        if self.wake.get(pid) != now_ms:
            return  # replaced by an earlier check
        del self.wake[pid]
        self.parked.pop(pid, None)
        what = _KINDS[int(rank)]
        lc = self.lifecycles[what]
        p = lc.tracked[pid].proposal
        uuid = p.dead_uuid
        actions = lc.due(pid, now_ms, self.view.state(uuid), self.view.seen.get(uuid, 0))
        if isinstance(actions[0], CheckGuard):
            members = self._candidates(what, now_ms)
            guard = guard_reason(
                members, p.last_seen_ms, self.dead_ms, self.settings.mass_failure_fraction
            )
            released_ms = self.released_ms if now_ms >= self.released_ms else 0
            actions = lc.guard(pid, now_ms, guard, released_ms)
        if isinstance(actions[0], Hold):
            self.parked[pid] = (key, now_ms)
            if now_ms < self.released_ms:
                self._wake(pid, key, _next_tick(now_ms, self.released_ms))
        elif isinstance(actions[0], Decide):
            if what == "takeover":
                n_jobs = len(self.ownership.owned(uuid, now_ms))
                actions = self._takeover(lc, pid, p, members, n_jobs, now_ms)
            else:
                actions = self._recovery(lc, pid, p, members, now_ms)
        self._apply(what, now_ms, actions)

    def _takeover(
        self,
        lc: _Lifecycle,
        pid: str,
        p: TakeoverProposal | RecoveryProposal,
        members: list[Candidate],
        n_jobs: int,
        now_ms: int,
    ) -> list[Action]:
        plan = takeover.plan_takeover(members, p.dead_uuid, n_jobs, self.settings, seed=p.id)
        if plan.outcome != "commit":
            return lc.failed(pid, now_ms, plan.outcome, plan.detail)
        moved = self.ownership.move(p.dead_uuid, plan.quotas, now_ms)
        self._version += 1
        jobs = [{"job": job, "name": self.ownership.jobs[job].name, "to": to} for job, to in moved]
        self._decided(
            "takeover",
            p.dead_uuid,
            now_ms,
            p.id,
            "committed",
            f"{len(jobs)} job(s) moved",
            destinations=dict(plan.quotas),
            jobs=jobs,
        )
        return lc.committed(pid, now_ms)

    def _recovery(
        self,
        lc: _Lifecycle,
        pid: str,
        p: TakeoverProposal | RecoveryProposal,
        members: list[Candidate],
        now_ms: int,
    ) -> list[Action]:
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
            return lc.failed(pid, now_ms, plan.outcome, plan.detail)
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
        self._decided(
            "recovery",
            p.dead_uuid,
            now_ms,
            p.id,
            "committed",
            detail,
            marked=list(plan.mark),
            retries=retries,
            destinations=dict(sorted(destinations.items())),
        )
        return lc.committed(pid, now_ms)

    # -- carrying out the lifecycle's actions ------------------------------------------------

    def _apply(self, what: str, at_ms: int, actions: list[Action]) -> None:
        lc = self.lifecycles[what]
        for a in actions:
            if isinstance(a, Record):
                p = a.proposal
                self._decided(what, p.dead_uuid, a.at_ms, p.id, a.outcome, a.detail)
            elif isinstance(a, NotProposed):
                reason = a.reason
                if a.window_end_ms is not None:
                    reason = f"{reason} (window ends {iso_ms(a.window_end_ms)})"
                self._emit(a.at_ms, "not_proposed", a.uuid, what=what, reason=reason)
            elif isinstance(a, Publish):
                p = a.proposal
                lc.published(p)  # type: ignore[arg-type]
                lc.claimed(p.id, p)  # type: ignore[arg-type]
                self._wake(p.id, _ranked(what, p.id), p.due_at_ms)
                self._emit(
                    at_ms,
                    "proposed",
                    p.dead_uuid,
                    what=what,
                    proposal=p.id,
                    due_at_ms=p.due_at_ms,
                    last_seen_ms=p.last_seen_ms,
                    by=a.by,
                )
            elif isinstance(a, Done):
                key = f"{what}:{a.proposal.dead_uuid}"
                self.timers.at(a.window_end_ms, WINDOW_END, _ranked(what, key))

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

    def _needs(self, what: str, uuid: str, now_ms: int) -> bool:
        """What the workers' scan asks: still owns jobs / still has running executions."""
        if what == "takeover":
            return bool(self.ownership.owned(uuid, now_ms))
        return bool(self._running(uuid))

    def _running(self, uuid: str) -> tuple[str, ...]:
        """The member's running executions: its last heartbeat's, unless recovered since."""
        hb = self.view.info.get(uuid)
        if hb is None or self.view.seen.get(uuid, 0) <= self.recovered_at.get(uuid, -1):
            return ()
        return hb.running

    def _decided(
        self, what: str, uuid: str, at_ms: int, pid: str, outcome: str, detail: str, **extra: Any
    ) -> None:
        self._emit(
            at_ms,
            "decided",
            uuid,
            what=what,
            proposal=pid,
            outcome=outcome,
            detail=detail,
            **extra,
        )

    def _emit(self, at_ms: int, kind: str, uuid: str, **data: Any) -> None:
        self.emit(Event(at_ms, kind, uuid, self.view.name(uuid), data))
