"""Pure recovery decisions: whether an execution gets another attempt and when, which
dead members are recovered, where their retries run, and the plan of one recovery.

Nothing here reads a clock, Redis or SQL: times come in as ``now_ms`` (epoch ms), members
as :class:`workers.proposals.candidates.Candidate` (the view and the last heartbeats).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.keys import GROUP_RECOVERY, Keys
from schemas.messages import MemberState, RecoveryProposal
from schemas.settings import RecoverPolicy, Settings
from workers.proposals.candidates import Candidate
from workers.proposals.lifecycle import Rules
from workers.store import NewExecution, RunningExecution
from workers.takeover.decide import spread_fewest_first

__all__ = [
    "RecoveryPlan",
    "assign_retries",
    "destinations",
    "eligible",
    "next_retry",
    "plan_recovery",
    "recovery_rules",
    "retry_id",
]

_RETRY_NAMESPACE = uuidlib.UUID("8f4c2a51-6f0e-4c1b-9a53-2e5d3b7c9e10")


def next_retry(
    *,
    execution_id: str,
    retry_of: str | None,
    job_id: str,
    attempt: int,
    retry_count: int,
    retry_delay_s: float,
    to_uuid: str,
    now_ms: int,
    new_id: str,
) -> NewExecution | None:
    """The retry of an execution that failed or was interrupted, or None when its job has
    no retries left: attempt ``n`` of a job with ``retry_count`` retries is followed by
    attempt ``n + 1`` while ``n <= retry_count``. The retry runs on ``to_uuid``, not before
    ``now_ms`` + the job's retry delay, linked to the first execution of the chain."""
    if attempt > retry_count:
        return None
    return NewExecution(
        id=new_id,
        job_id=job_id,
        member_uuid=to_uuid,
        fire_ms=now_ms + round(retry_delay_s * 1000),
        attempt=attempt + 1,
        retry_of=retry_of or execution_id,
    )


def recovery_rules(settings: Settings) -> Rules[RecoveryProposal]:
    """The recovery proposals' rules (``recoverExecutions.*``), for their lifecycle."""
    keys = Keys(settings.redis_prefix)
    return Rules(
        what="recovery",
        message=RecoveryProposal,
        stream=keys.recovery,
        group=GROUP_RECOVERY,
        attempt_key=keys.recovery_attempt,
        enabled=settings.recover_enabled,
        policy=settings.recover_policy.value,
        delay_ms=round(settings.recover_delay_s * 1000),
        sleep_ms=round(settings.recover_sleep_s * 1000),
        eligible=lambda uuid: eligible(uuid, settings),
    )


def eligible(dead_uuid: str, settings: Settings) -> tuple[bool, str]:
    """Whether a dead member's executions are recovered, and why (for logs and the audit)."""
    if not settings.recover_enabled:
        return False, "recoverExecutions disabled"
    if settings.recover_policy is RecoverPolicy.STATIC:
        if dead_uuid in settings.recover_allowed:
            return True, "static policy: member is allowed"
        return False, "static policy: member not in recoverExecutions.config.allowed"
    return True, f"{settings.recover_policy.value} policy"


def destinations(members: Sequence[Candidate], dead_uuid: str) -> list[Candidate]:
    """Members a retry may run on: active, not passive, never the dead member; fewest
    running executions first, then by uuid."""
    pool = [
        m
        for m in members
        if m.uuid != dead_uuid and m.state is MemberState.ACTIVE and not m.passive
    ]
    return sorted(pool, key=lambda m: (m.running, m.uuid))


def assign_retries(execution_ids: Sequence[str], pool: Sequence[Candidate]) -> dict[str, str]:
    """Execution id -> the member its retry runs on: the members with the fewest running
    executions receive first, so that loads end as even as they can be (deterministic:
    executions by id, members by uuid). Empty when ``pool`` is."""
    if not pool:
        return {}
    quotas = spread_fewest_first({m.uuid: m.running for m in pool}, len(execution_ids))
    slots = [member for member, n in quotas for _ in range(n)]
    return dict(zip(sorted(execution_ids), slots, strict=True))


def retry_id(proposal_id: str, execution_id: str) -> str:
    """The id of the retry a recovery proposal gives an execution: the same for every
    redelivery of the proposal, different for another proposal."""
    return str(uuidlib.uuid5(_RETRY_NAMESPACE, f"{proposal_id}:{execution_id}"))


@dataclass(frozen=True)
class RecoveryPlan:
    """What one recovery does. ``outcome`` ``commit``: mark ``mark`` incomplete, insert
    ``retries`` (by the execution they retry), move the waiting executions to
    ``reschedule_to`` (None: leave them). ``skipped`` (nothing to recover) and
    ``no_destination`` (retries or waiting executions but no member to run them; retried
    after ``sleep``) change nothing."""

    outcome: str
    detail: str = ""
    mark: tuple[str, ...] = ()
    retries: Mapping[str, NewExecution] = field(default_factory=dict)
    reschedule_to: str | None = None


def plan_recovery(
    *,
    proposal_id: str,
    dead_uuid: str,
    running: Sequence[RunningExecution],
    waiting: int,
    members: Sequence[Candidate],
    now_ms: int,
) -> RecoveryPlan:
    """The recovery of ``dead_uuid``: its ``running`` executions become incomplete, those of
    jobs with retries left are retried on :func:`destinations` (spread by
    :func:`assign_retries`, not before ``now_ms`` + the job's retry delay), and its
    ``waiting`` (scheduled, not started) executions move to the least loaded destination.
    """
    if not running and not waiting:
        return RecoveryPlan("skipped", "nothing running or waiting on the member")
    pool = destinations(members, dead_uuid)
    again = [e for e in running if e.attempt <= e.retry_count]
    if not pool and (again or waiting):
        return RecoveryPlan(
            "no_destination",
            f"no active, non-passive member for {len(again)} retry(ies) and "
            f"{waiting} waiting execution(s)",
        )
    to = assign_retries([e.id for e in again], pool)
    retries = {
        e.id: retry
        for e in again
        if (
            retry := next_retry(
                execution_id=e.id,
                retry_of=e.retry_of,
                job_id=e.job_id,
                attempt=e.attempt,
                retry_count=e.retry_count,
                retry_delay_s=e.retry_delay_s,
                to_uuid=to[e.id],
                now_ms=now_ms,
                new_id=retry_id(proposal_id, e.id),
            )
        )
        is not None
    }
    return RecoveryPlan(
        "commit",
        mark=tuple(sorted(e.id for e in running)),
        retries=retries,
        reschedule_to=pool[0].uuid if pool and waiting else None,
    )
