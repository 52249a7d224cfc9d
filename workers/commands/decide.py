"""Pure remote-execution decisions: which members a remote execution may go to, and which one.

``remote_destinations`` is the one filter of the ``remoteExecution.config.*`` settings; the
takeover policy ``remoteexecution`` uses it too (``workers.takeover.decide``). Nothing here
reads a clock, Redis or SQL: candidates come from the liveness view
(``workers.proposals.candidates_from_view``), the RoundRobin turn from a Redis counter
the caller increments.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from schemas.messages import MemberState
from schemas.settings import RemoteExecutionPolicy, Settings

__all__ = [
    "Choice",
    "Receiver",
    "choose_member",
    "receiving_states",
    "remote_destinations",
    "target_problem",
]


class Receiver(Protocol):
    """A member as the liveness view sees it (``workers.proposals.Candidate`` fits)."""

    @property
    def uuid(self) -> str: ...
    @property
    def state(self) -> MemberState | None: ...
    @property
    def passive(self) -> bool: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def running(self) -> int: ...


R = TypeVar("R", bound=Receiver)


@dataclass(frozen=True)
class Choice:
    """The member chosen (None: nobody may receive it) and why, in words for the operator."""

    uuid: str | None
    reason: str


def receiving_states(settings: Settings) -> frozenset[MemberState]:
    """States a member may be in to receive a remote execution: ``active``, and
    ``inactive`` too when ``remoteExecution.config.activeOnly`` is false."""
    if settings.remote_execution_active_only:
        return frozenset({MemberState.ACTIVE})
    return frozenset({MemberState.ACTIVE, MemberState.INACTIVE})


def remote_destinations(
    candidates: Sequence[R], settings: Settings, *, exclude: Collection[str] = ()
) -> list[R]:
    """The members a remote execution may go to, in the order given.

    Not ``exclude``d, not passive, in a receiving state (:func:`receiving_states`); with the
    Preset policy only those in ``remoteExecution.config.allowed``; when any of them has one
    of ``remoteExecution.config.preferredTags``, only those.
    """
    ok = receiving_states(settings)
    pool = [c for c in candidates if c.uuid not in exclude and not c.passive and c.state in ok]
    if settings.remote_execution_policy is RemoteExecutionPolicy.PRESET:
        allowed = set(settings.remote_execution_allowed)
        pool = [c for c in pool if c.uuid in allowed]
    preferred = set(settings.remote_execution_preferred_tags)
    tagged = [c for c in pool if preferred & set(c.tags)]
    return tagged or pool


def choose_member(
    candidates: Sequence[Receiver],
    settings: Settings,
    *,
    owner_uuid: str | None,
    turn: int,
    seed: str,
    exclude: Collection[str] = (),
) -> Choice:
    """The member a remote execution of a job owned by ``owner_uuid`` goes to, by
    ``remoteExecution.policy``, among :func:`remote_destinations`:

    - None: the job's owner, when it is in a receiving state and not excluded (passive or
      not: it fires that job anyway); otherwise as Load.
    - Random: one at random, seeded by ``seed`` (the command id: a retry decides the same).
    - RoundRobin: by uuid, the ``turn``-th (``turn`` counts up from 1, one per choice).
    - Preset: the first member of ``remoteExecution.config.allowed``, in the order listed.
    - Load: the fewest running executions (from the heartbeats), then by uuid.
    """
    policy = settings.remote_execution_policy
    pool = remote_destinations(candidates, settings, exclude=exclude)
    prefix = ""
    if policy is RemoteExecutionPolicy.NONE:
        owner = next((c for c in candidates if c.uuid == owner_uuid), None)
        receives = owner is not None and owner.state in receiving_states(settings)
        if owner is not None and receives and owner.uuid not in exclude:
            return Choice(owner.uuid, "policy None: the job's owner")
        prefix = f"policy None: the job's owner {owner_uuid} {_why_not(owner, exclude)}; "
    if not pool:
        return Choice(None, prefix + _nobody(settings))
    by_uuid = sorted(pool, key=lambda c: c.uuid)
    if policy is RemoteExecutionPolicy.RANDOM:
        return Choice(random.Random(seed).choice(by_uuid).uuid, "policy Random")
    if policy is RemoteExecutionPolicy.ROUND_ROBIN:
        turn_of = by_uuid[(turn - 1) % len(by_uuid)]
        return Choice(turn_of.uuid, f"policy RoundRobin: turn {turn} of {len(by_uuid)} members")
    if policy is RemoteExecutionPolicy.PRESET:
        uuids = {c.uuid for c in pool}
        first = next(u for u in settings.remote_execution_allowed if u in uuids)
        return Choice(first, "policy Preset: first of remoteExecution.config.allowed")
    least = min(pool, key=lambda c: (c.running, c.uuid))
    label = prefix or "policy Load: "
    return Choice(least.uuid, f"{label}fewest running executions ({least.running})")


def target_problem(member_uuid: str, state: MemberState | None) -> str | None:
    """Why ``member_uuid`` cannot be named as a command's target (``qwc run --on``), or None.

    Dead and unknown members process no commands; an inactive member may still (its
    heartbeats are late), so it is accepted.
    """
    if state is None:
        return f"member {member_uuid} is unknown to the liveness view (never heard)"
    if state is MemberState.DEAD:
        return f"member {member_uuid} is dead"
    return None


def _why_not(owner: Receiver | None, exclude: Collection[str]) -> str:
    if owner is None:
        return "is unknown to the liveness view"
    if owner.uuid in exclude:
        return "is excluded (dead)"
    return f"is {owner.state.value if owner.state else 'unknown'}"


def _nobody(settings: Settings) -> str:
    states = " or ".join(sorted(s.value for s in receiving_states(settings)))
    where = (
        " in remoteExecution.config.allowed"
        if settings.remote_execution_policy is RemoteExecutionPolicy.PRESET
        else ""
    )
    return f"no {states}, non-passive member{where} may receive it"
