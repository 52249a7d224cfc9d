"""A member's own interrupted executions: marked ``incomplete`` and retried, as a recovery
would, by the member itself — at start (leftovers of a run that died or was stopped hard)
and at the end of a drain (what did not finish within ``drainTimeout``).

:func:`recover_own` is the one behaviour both use, written once with the recovery's pure
plan (:func:`workers.recovery.decide.plan_recovery`) and commit
(:func:`workers.store.commit_recovery`): only executions still ``running`` are marked;
those of jobs with retries left get a retry (attempt + 1, after the job's retry delay) on
the members given, spread as a recovery spreads them; the commit is recorded in
``recoveries`` (proposal id ``<policy>-<uuid>-<ms>``) when it marked anything.

* :func:`startup_cleanup`: when ``recoverExecutions`` applies to the member (enabled, and
  the policy allows it), the leftovers are retried on the member itself, as a recovery
  would retry them elsewhere: a member that came back before anyone declared it dead (so no
  recovery proposal was ever due) does not lose those retries (policy ``startup``).
  Otherwise they are only marked.
* a drain (:mod:`workers.node.node`) retries on another active, non-passive member, else
  on the member itself (policy ``drain``), whatever ``recoverExecutions`` says: the job's
  own retries apply to an execution its member interrupted, as to one that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from schemas.messages import MemberState
from schemas.settings import Settings
from workers.proposals import Candidate
from workers.recovery.decide import eligible, plan_recovery
from workers.store import (
    RecoveryResult,
    Store,
    commit_recovery,
    mark_incomplete,
    running_executions,
)

__all__ = ["DRAIN_REASON", "STARTUP_REASON", "recover_own", "startup_cleanup"]

log = logging.getLogger(__name__)

STARTUP_REASON = "left running when its member stopped; marked at the member's start"
DRAIN_REASON = "still running when its member's drain timed out"


def recover_own(
    store: Store,
    *,
    member_uuid: str,
    members: Sequence[Candidate],
    policy: str,
    now_ms: int,
    reason: str,
    execution_ids: Collection[str] | None = None,
) -> RecoveryResult:
    """Mark ``member_uuid``'s running executions (all, or those of ``execution_ids``)
    ``incomplete`` because of ``reason`` (words, kept on each execution) and retry those
    with retries left on ``members`` (active, non-passive ones other than ``member_uuid``;
    none of them: on ``member_uuid`` itself). Recorded in ``recoveries`` with ``policy``.
    Times are epoch ms."""
    running = [
        e
        for e in running_executions(store, member_uuid)
        if execution_ids is None or e.id in execution_ids
    ]
    if not running:
        return RecoveryResult(committed=False)
    proposal_id = f"{policy}-{member_uuid}-{now_ms}"
    plan = plan_recovery(
        proposal_id=proposal_id,
        dead_uuid=member_uuid,
        running=running,
        waiting=0,
        members=members,
        now_ms=now_ms,
    )
    here = ""
    if plan.outcome == "no_destination":  # nobody else: the member itself, when it runs again
        plan = plan_recovery(
            proposal_id=proposal_id,
            dead_uuid="",
            running=running,
            waiting=0,
            members=[Candidate(member_uuid, MemberState.ACTIVE, now_ms)],
            now_ms=now_ms,
        )
        here = " here"
    result = commit_recovery(
        store,
        proposal_id=proposal_id,
        dead_uuid=member_uuid,
        policy=policy,
        proposed_ms=now_ms,
        due_ms=now_ms,
        now_ms=now_ms,
        mark=plan.mark,
        retries=plan.retries,
        detail=f"{policy}: {len(plan.mark)} execution(s) of the member marked incomplete, "
        f"{len(plan.retries)} retried{here}",
        reason=reason,
    )
    log.info(
        "member %s: %s: %s marked incomplete, %s retried%s",
        member_uuid,
        policy,
        len(result.marked),
        len(result.retries),
        here,
    )
    return result


def startup_cleanup(
    store: Store, settings: Settings, *, member_uuid: str, now_ms: int
) -> list[str]:
    """Mark ``member_uuid``'s running executions incomplete (retrying those with retries
    left when recovery applies, see the module docstring); returns the ids marked."""
    if not eligible(member_uuid, settings)[0]:
        return mark_incomplete(store, member_uuid=member_uuid, now_ms=now_ms, reason=STARTUP_REASON)
    here = [Candidate(member_uuid, MemberState.ACTIVE, now_ms)]
    return recover_own(
        store,
        member_uuid=member_uuid,
        members=here,
        policy="startup",
        now_ms=now_ms,
        reason=STARTUP_REASON,
    ).marked
