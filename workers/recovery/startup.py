"""Start-up cleanup: a member that starts finds its own leftover ``running`` executions (it
died or was stopped hard while they ran) and marks them ``incomplete``.

When ``recoverExecutions`` applies to the member (enabled, and the policy allows it), the
leftovers of jobs with retries left are retried on the member itself, as a recovery would
retry them elsewhere: a member that came back before anyone declared it dead (so no
recovery proposal was ever due) does not lose those retries. The cleanup is recorded in
``recoveries`` (proposal id ``startup-<uuid>-<ms>``, policy ``startup``) when it marked
anything.
"""

from __future__ import annotations

import logging

from schemas.messages import MemberState
from schemas.settings import Settings
from workers.recovery.decide import eligible, plan_recovery
from workers.store import Store, commit_recovery, mark_incomplete, running_executions
from workers.takeover.decide import Candidate

__all__ = ["startup_cleanup"]

log = logging.getLogger(__name__)

STARTUP_REASON = "left running when its member stopped; marked at the member's start"


def startup_cleanup(
    store: Store, settings: Settings, *, member_uuid: str, now_ms: int
) -> list[str]:
    """Mark ``member_uuid``'s running executions incomplete (retrying those with retries
    left when recovery applies, see the module docstring); returns the ids marked."""
    if not eligible(member_uuid, settings)[0]:
        return mark_incomplete(store, member_uuid=member_uuid, now_ms=now_ms, reason=STARTUP_REASON)
    running = running_executions(store, member_uuid)
    if not running:
        return []
    proposal_id = f"startup-{member_uuid}-{now_ms}"
    plan = plan_recovery(
        proposal_id=proposal_id,
        dead_uuid="",  # the member itself receives the retries
        running=running,
        waiting=0,
        members=[Candidate(member_uuid, MemberState.ACTIVE, now_ms)],
        now_ms=now_ms,
    )
    result = commit_recovery(
        store,
        proposal_id=proposal_id,
        dead_uuid=member_uuid,
        policy="startup",
        proposed_ms=now_ms,
        due_ms=now_ms,
        now_ms=now_ms,
        mark=plan.mark,
        retries=plan.retries,
        detail=f"start-up cleanup: {len(plan.mark)} leftover execution(s) marked incomplete, "
        f"{len(plan.retries)} retried here",
        reason=STARTUP_REASON,
    )
    log.info(
        "member %s: start-up cleanup: %s marked incomplete, %s retried",
        member_uuid,
        len(result.marked),
        len(result.retries),
    )
    return result.marked
