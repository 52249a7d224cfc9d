"""The takeover worker (``qwc worker takeover``): dead members' jobs move to live members.

The stream plumbing is :class:`workers.proposal_worker.ProposalWorker`'s: proposals on
``{qwc}:takeover`` in the consumer group ``takeover``, published once per
``autotakeover.sleep``, held until due (``autotakeover.delay`` after the death), checked
again (member back -> cancelled), reclaimed from a dead replica, and proposed again by a
periodic scan for dead members that still own jobs. What is the takeover's: eligibility
by ``autotakeover.policy``, the mass-failure guard (held until ``qwc takeover release``),
the choice of destinations, and the commit in one transaction keyed by the proposal id.
"""

from __future__ import annotations

import logging
import threading

import redis

from schemas.keys import GROUP_TAKEOVER
from schemas.messages import TakeoverProposal
from schemas.settings import Settings
from workers.liveness import view
from workers.proposal_worker import Held, ProposalWorker, candidates_from_view
from workers.store import Store, commit_takeover, count_jobs_by_owner, record_takeover_outcome
from workers.takeover.decide import eligible, plan_takeover

__all__ = ["GROUP", "TakeoverWorker", "candidates_from_view"]

log = logging.getLogger(__name__)

GROUP = GROUP_TAKEOVER


class TakeoverWorker(ProposalWorker[TakeoverProposal]):
    """One replica of the takeover worker."""

    what = "takeover"
    kind = TakeoverProposal
    group = GROUP

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        settings: Settings,
        *,
        consumer: str,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(
            client,
            store,
            settings,
            consumer=consumer,
            delay_s=settings.autotakeover_delay_s,
            sleep_s=settings.autotakeover_sleep_s,
            stop=stop,
        )

    @property
    def stream(self) -> str:
        return self.keys.takeover

    def attempt_key(self, member_uuid: str) -> str:
        return self.keys.takeover_attempt(member_uuid)

    @property
    def enabled(self) -> bool:
        return self.settings.autotakeover_enabled

    @property
    def policy(self) -> str:
        return self.settings.autotakeover_policy.value

    def eligible(self, dead_uuid: str) -> tuple[bool, str]:
        return eligible(dead_uuid, self.settings)

    def needing(self, dead_uuids: list[str]) -> list[str]:
        """Dead members that still own jobs."""
        owned = count_jobs_by_owner(self.store)
        return [u for u in dead_uuids if owned.get(u, 0) > 0]

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
        record_takeover_outcome(
            self.store,
            proposal_id=proposal_id,
            dead_uuid=dead_uuid,
            policy=policy,
            proposed_ms=proposed_ms,
            due_ms=due_ms,
            now_ms=now_ms,
            outcome=outcome,
            detail=detail,
        )

    def decide(self, held: Held[TakeoverProposal], snap: view.ViewSnapshot, now_ms: int) -> None:
        """Guard, destinations, commit."""
        p = held.proposal
        owned = count_jobs_by_owner(self.store)
        members = candidates_from_view(snap, owned)
        if self.guarded(held, members, now_ms):
            return
        plan = plan_takeover(
            members, p.dead_uuid, owned.get(p.dead_uuid, 0), self.settings, seed=p.id
        )
        if plan.outcome != "commit":
            self.finish(held, now_ms, plan.outcome, plan.detail)
            return
        result = commit_takeover(
            self.store,
            proposal_id=p.id,
            dead_uuid=p.dead_uuid,
            policy=p.policy,
            proposed_ms=p.proposed_at_ms,
            due_ms=p.due_at_ms,
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
        self.forget(held)
