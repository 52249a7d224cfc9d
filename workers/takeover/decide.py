"""Pure takeover decisions: who may be taken over and who receives the jobs.

Every function here takes data and returns a decision; nothing reads a clock, Redis or SQL.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.keys import GROUP_TAKEOVER, Keys
from schemas.messages import MemberState, TakeoverProposal
from schemas.settings import RemoteExecutionPolicy, Settings, TakeoverPolicy
from workers.commands.decide import remote_destinations
from workers.proposals.candidates import Candidate
from workers.proposals.lifecycle import Rules

__all__ = [
    "TakeoverPlan",
    "choose_quotas",
    "eligible",
    "plan_takeover",
    "spread_fewest_first",
    "takeover_rules",
]


def eligible(dead_uuid: str, settings: Settings) -> tuple[bool, str]:
    """Whether autotakeover applies to a dead member, and why (for logs and the audit)."""
    if not settings.autotakeover_enabled:
        return False, "autotakeover disabled"
    if settings.autotakeover_policy is TakeoverPolicy.STATIC:
        if dead_uuid in settings.autotakeover_allowed:
            return True, "static policy: member is allowed"
        return False, "static policy: member not in autotakeover.config.allowed"
    return True, f"{settings.autotakeover_policy.value} policy"


def takeover_rules(settings: Settings) -> Rules[TakeoverProposal]:
    """The takeover proposals' rules (``autotakeover.*``), for their lifecycle."""
    keys = Keys(settings.redis_prefix)
    return Rules(
        what="takeover",
        message=TakeoverProposal,
        stream=keys.takeover,
        group=GROUP_TAKEOVER,
        attempt_key=keys.takeover_attempt,
        enabled=settings.autotakeover_enabled,
        policy=settings.autotakeover_policy.value,
        delay_ms=round(settings.autotakeover_delay_s * 1000),
        sleep_ms=round(settings.autotakeover_sleep_s * 1000),
        eligible=lambda uuid: eligible(uuid, settings),
    )


def spread_fewest_first(levels: dict[str, int], n_jobs: int) -> list[tuple[str, int]]:
    """Give ``n_jobs`` to the members of ``levels`` (member -> current load), least loaded
    first, so that loads end as even as they can be; ties go by (load, uuid). Deterministic.

    Returns (member, jobs to receive) for each member receiving at least one, by uuid.
    """
    if not levels or n_jobs <= 0:
        return []

    def fill(level: int) -> int:  # jobs needed to raise everyone below ``level`` to it
        return sum(max(0, level - v) for v in levels.values())

    lo, hi = min(levels.values()), max(levels.values()) + n_jobs
    while lo < hi:  # the lowest water level that takes every job
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fill(mid) >= n_jobs else (mid + 1, hi)
    give = {u: max(0, lo - 1 - v) for u, v in levels.items()}
    rest = n_jobs - sum(give.values())
    below = sorted((u for u, v in levels.items() if v <= lo - 1), key=lambda u: (levels[u], u))
    for u in below[:rest]:
        give[u] += 1
    return sorted((u, g) for u, g in give.items() if g > 0)


def _destinations(
    candidates: Sequence[Candidate], dead_uuid: str, settings: Settings
) -> list[Candidate]:
    """Members allowed to receive jobs: never the dead one, a dead or passive member; for
    the ``remoteexecution`` policy, those a remote execution may go to."""
    if settings.autotakeover_policy is TakeoverPolicy.REMOTE_EXECUTION:
        return remote_destinations(candidates, settings, exclude=(dead_uuid,))
    return [
        c
        for c in candidates
        if c.uuid != dead_uuid and not c.passive and c.state is MemberState.ACTIVE
    ]


def choose_quotas(
    candidates: Sequence[Candidate],
    dead_uuid: str,
    n_jobs: int,
    settings: Settings,
    *,
    seed: str,
) -> list[tuple[str, int]]:
    """Which members receive how many of the dead member's ``n_jobs`` jobs.

    ``any`` (and remote execution policy None or Preset): fewest-owned first. RoundRobin:
    equal shares in uuid order. Random: a random share, seeded by ``seed`` (the proposal id)
    so a redelivery decides the same. Load: fewest running executions first.
    Empty when no member can receive them.
    """
    pool = _destinations(candidates, dead_uuid, settings)
    if not pool or n_jobs <= 0:
        return []
    policy = (
        settings.remote_execution_policy
        if settings.autotakeover_policy is TakeoverPolicy.REMOTE_EXECUTION
        else RemoteExecutionPolicy.NONE
    )
    if policy is RemoteExecutionPolicy.ROUND_ROBIN:
        return spread_fewest_first(dict.fromkeys((c.uuid for c in pool), 0), n_jobs)
    if policy is RemoteExecutionPolicy.RANDOM:
        rng = random.Random(seed)
        counts: dict[str, int] = {}
        for _ in range(n_jobs):
            u = rng.choice(sorted(c.uuid for c in pool))
            counts[u] = counts.get(u, 0) + 1
        return sorted(counts.items())
    if policy is RemoteExecutionPolicy.LOAD:
        return spread_fewest_first({c.uuid: c.running for c in pool}, n_jobs)
    return spread_fewest_first({c.uuid: c.jobs_owned for c in pool}, n_jobs)


@dataclass(frozen=True)
class TakeoverPlan:
    """What a due takeover proposal does (once the guard let it through). ``outcome``
    ``commit``: move the jobs by ``quotas`` (member, jobs to receive); ``skipped`` (the
    member owns no jobs) and ``no_destination`` (retried after ``sleep``) change nothing."""

    outcome: str
    detail: str = ""
    quotas: tuple[tuple[str, int], ...] = ()


def plan_takeover(
    candidates: Sequence[Candidate],
    dead_uuid: str,
    n_jobs: int,
    settings: Settings,
    *,
    seed: str,
) -> TakeoverPlan:
    """The takeover of ``dead_uuid``, which owns ``n_jobs`` scheduled jobs: skipped when it
    owns none, ``no_destination`` when :func:`choose_quotas` finds nobody, else commit."""
    if n_jobs <= 0:
        return TakeoverPlan("skipped", "the member owns no scheduled jobs")
    quotas = choose_quotas(candidates, dead_uuid, n_jobs, settings, seed=seed)
    if not quotas:
        return TakeoverPlan("no_destination", "no active, non-passive member")
    return TakeoverPlan("commit", quotas=tuple(quotas))
