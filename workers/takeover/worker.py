"""The takeover worker (``qwc worker takeover``): dead members' jobs move to live members.

The lifecycle and its stream plumbing are :class:`workers.proposals.worker.ProposalWorker`'s:
proposals on ``{qwc}:takeover`` in the consumer group ``takeover``, published once per
``autotakeover.sleep``, held until due (``autotakeover.delay`` after the death), checked
again (member back -> cancelled), held by the mass-failure guard (until ``qwc takeover
release``), reclaimed from a dead replica, and proposed again by a periodic scan for dead
members that still own jobs. What is the takeover's (:class:`TakeoverKind`): eligibility
by ``autotakeover.policy``, the choice of destinations, and the commit in one transaction
keyed by the proposal id.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from schemas.keys import GROUP_TAKEOVER
from schemas.messages import TakeoverProposal
from schemas.settings import Settings
from workers.liveness import view
from workers.proposals import (
    Candidate,
    Decision,
    ProposalWorker,
    Rules,
    audit_key,
    candidates_from_view,
)
from workers.store import (
    FINAL_OUTCOMES,
    Store,
    commit_takeover,
    count_jobs_by_owner,
    find_takeover,
    record_takeover_outcome,
)
from workers.takeover.decide import plan_takeover, takeover_rules

__all__ = ["GROUP", "TakeoverKind", "TakeoverWorker"]

log = logging.getLogger(__name__)

GROUP = GROUP_TAKEOVER


@dataclass(frozen=True)
class TakeoverKind:
    """What a takeover proposal is and does, for :class:`ProposalWorker`."""

    store: Store
    settings: Settings

    @property
    def rules(self) -> Rules[TakeoverProposal]:
        return takeover_rules(self.settings)

    def needing(self, dead_uuids: list[str]) -> list[str]:
        """Dead members that still own jobs."""
        owned = count_jobs_by_owner(self.store)
        return [u for u in dead_uuids if owned.get(u, 0) > 0]

    def candidates(self, snap: view.ViewSnapshot) -> list[Candidate]:
        """The view's members, with the jobs each owns."""
        return candidates_from_view(snap, count_jobs_by_owner(self.store))

    def record(self, p: TakeoverProposal, now_ms: int, outcome: str, detail: str) -> None:
        record_takeover_outcome(
            self.store,
            **audit_key(p),
            now_ms=now_ms,
            outcome=outcome,
            detail=detail,
        )

    def on_dead(self, dead_uuids: list[str], now_ms: int) -> None:
        """Nothing: a takeover has no work outside its proposals."""

    def final_outcome(self, p: TakeoverProposal) -> str | None:
        """The final outcome of ``p``'s audit row (None: none yet)."""
        row = find_takeover(self.store, p.id)
        return row.outcome if row is not None and row.outcome in FINAL_OUTCOMES else None

    def decide(self, p: TakeoverProposal, members: list[Candidate], now_ms: int) -> Decision:
        """Destinations, then the commit."""
        n_jobs = next((m.jobs_owned for m in members if m.uuid == p.dead_uuid), 0)
        plan = plan_takeover(members, p.dead_uuid, n_jobs, self.settings, seed=p.id)
        if plan.outcome != "commit":
            return Decision(plan.outcome, plan.detail)
        result = commit_takeover(
            self.store,
            **audit_key(p),
            now_ms=now_ms,
            quotas=plan.quotas,
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
        return Decision("committed")


class TakeoverWorker(ProposalWorker[TakeoverProposal]):
    """One replica of the takeover worker: a :class:`ProposalWorker` of :class:`TakeoverKind`."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        settings: Settings,
        *,
        consumer: str,
        stop: threading.Event | None = None,
    ) -> None:
        kind = TakeoverKind(store, settings)
        super().__init__(client, store, settings, kind, consumer=consumer, stop=stop)
