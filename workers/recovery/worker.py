"""The recovery worker (``qwc worker recovery``): a dead member's running executions are
marked ``incomplete`` and those of jobs with retries left run again on a live member.

The lifecycle and its stream plumbing are :class:`workers.proposals.worker.ProposalWorker`'s
(with :class:`RecoveryKind`): proposals on
``{qwc}:recovery`` in the consumer group ``recovery``, published once per
``recoverExecutions.sleep`` per member, held until due (``recoverExecutions.delay`` after
the death), checked again (member back -> ``cancelled``), reclaimed from a dead replica,
and proposed again by a periodic scan for dead members that still have running or waiting
executions. What is the recovery's: eligibility by ``recoverExecutions.policy``, the plan
(:func:`workers.recovery.decide.plan_recovery`) and its commit
(:func:`workers.store.commit_recovery`): one transaction keyed by the proposal id that
marks only executions still running and inserts a retry only for those it marked, so a
redelivered proposal, or a second one, never starts a second retry.

A retry is an execution ``scheduled`` on its destination with ``fire_ms`` = now + the job's
retry delay: that member's dispatch puts it on its RQ queue once due.

Remote commands: when a member turns dead, and on every scan for every dead member, the
worker hands the commands still pending on it to
:func:`workers.commands.reroute.reroute_commands` (an execute goes to another member, an
abort is applied in the store), whether or not ``recoverExecutions.enabled`` is set: a
command is never left on a dead member.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from schemas.keys import Keys
from schemas.messages import RecoveryProposal
from schemas.settings import Settings
from workers.commands.reroute import reroute_commands
from workers.liveness import view
from workers.proposals import (
    Candidate,
    Decision,
    ProposalWorker,
    Rules,
    audit_key,
    candidates_from_view,
)
from workers.recovery.decide import plan_recovery, recovery_rules
from workers.store import (
    FINAL_OUTCOMES,
    Store,
    Unfinished,
    commit_recovery,
    count_unfinished,
    find_recovery,
    pending_command_targets,
    record_recovery,
    running_executions,
)

__all__ = ["RecoveryKind", "RecoveryWorker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryKind:
    """What a recovery proposal is and does, for :class:`ProposalWorker`."""

    client: redis.Redis
    store: Store
    settings: Settings

    @property
    def rules(self) -> Rules[RecoveryProposal]:
        return recovery_rules(self.settings)

    def on_dead(self, dead_uuids: list[str], now_ms: int) -> None:
        """Re-route the commands pending on dead members."""
        keys = Keys(self.settings.redis_prefix)
        for dead_uuid in sorted(set(dead_uuids) & pending_command_targets(self.store)):
            reroute_commands(self.client, self.store, keys, self.settings, dead_uuid, now_ms)

    def needing(self, dead_uuids: list[str]) -> list[str]:
        """Dead members with executions still running or waiting on them."""
        return sorted(count_unfinished(self.store, dead_uuids))

    def candidates(self, snap: view.ViewSnapshot) -> list[Candidate]:
        return candidates_from_view(snap, {})

    def record(self, p: RecoveryProposal, now_ms: int, outcome: str, detail: str) -> None:
        record_recovery(
            self.store,
            **audit_key(p),
            decided_ms=now_ms,
            outcome=outcome,
            detail=detail,
        )

    def final_outcome(self, p: RecoveryProposal) -> str | None:
        """The final outcome of ``p``'s audit row (None: none yet)."""
        row = find_recovery(self.store, p.id)
        return row.outcome if row is not None and row.outcome in FINAL_OUTCOMES else None

    def decide(self, p: RecoveryProposal, members: list[Candidate], now_ms: int) -> Decision:
        """Plan from the store and the view, then commit in one transaction."""
        unfinished = count_unfinished(self.store, [p.dead_uuid]).get(p.dead_uuid, Unfinished())
        plan = plan_recovery(
            proposal_id=p.id,
            dead_uuid=p.dead_uuid,
            running=running_executions(self.store, p.dead_uuid) if unfinished.running else [],
            waiting=unfinished.waiting,
            members=members,
            now_ms=now_ms,
        )
        if plan.outcome != "commit":
            return Decision(plan.outcome, plan.detail)
        result = commit_recovery(
            self.store,
            **audit_key(p),
            now_ms=now_ms,
            mark=plan.mark,
            retries=plan.retries,
            reschedule_to=plan.reschedule_to,
        )
        if result.committed:
            log.info(
                "member %s: recovery %s committed: %s marked incomplete, %s retried, "
                "%s waiting moved to %s",
                p.dead_uuid,
                p.id,
                len(result.marked),
                len(result.retries),
                len(result.rescheduled),
                plan.reschedule_to,
            )
        return Decision("committed")


class RecoveryWorker(ProposalWorker[RecoveryProposal]):
    """One replica of the recovery worker: a :class:`ProposalWorker` of :class:`RecoveryKind`."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        settings: Settings,
        *,
        consumer: str,
        stop: threading.Event | None = None,
    ) -> None:
        kind = RecoveryKind(client, store, settings)
        super().__init__(client, store, settings, kind, consumer=consumer, stop=stop)
