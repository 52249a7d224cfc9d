"""Pure decisions of the proposal lifecycle that the takeover and recovery workers share.

:class:`workers.proposal_worker.ProposalWorker` reads Redis and SQL and calls these; the
replay (:mod:`workers.replay`) calls them on a virtual clock. Nothing here reads a clock,
Redis or SQL: times are Redis server milliseconds passed in.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.messages import Heartbeat, MemberState
from workers.takeover.decide import Candidate

__all__ = [
    "HELD_RECHECK_MS",
    "cancel_reason",
    "candidates",
    "check_at_ms",
    "guard_holds",
]

HELD_RECHECK_MS = 1_000  # how often a proposal the guard holds is looked at again


def check_at_ms(due_at_ms: int, next_check_ms: int) -> int:
    """When a held proposal is looked at next: once due, and not before its next check."""
    return max(due_at_ms, next_check_ms)


def cancel_reason(state: MemberState | None, seen_ms: int, last_seen_ms: int) -> str | None:
    """Why a due proposal about a member is cancelled, or None when it goes on: the member
    is no longer dead, or was heard (``seen_ms``, its last heartbeat now) after the
    heartbeat the proposal was made on (``last_seen_ms``)."""
    if state is not MemberState.DEAD or seen_ms > last_seen_ms:
        return f"member is {state} again"
    return None


def guard_holds(reason: str | None, released_ms: int, proposed_at_ms: int) -> bool:
    """Whether the mass-failure guard holds a proposal: it has a ``reason`` (see
    :func:`workers.takeover.decide.guard_reason`) and no ``qwc takeover release``
    (``released_ms``, 0: never) came after the proposal was made."""
    return bool(reason) and released_ms < proposed_at_ms


def candidates(
    states: Mapping[str, MemberState],
    seen_ms: Mapping[str, int],
    heartbeats: Mapping[str, Heartbeat],
    jobs_owned: Mapping[str, int],
) -> list[Candidate]:
    """Every member the view knows (a state or a last-seen time), by uuid, as candidates to
    receive a dead member's jobs or retries: state, last seen, and from its last heartbeat
    passive, tags, running."""
    out = []
    for uuid in sorted(set(states) | set(seen_ms)):
        hb = heartbeats.get(uuid)
        out.append(
            Candidate(
                uuid=uuid,
                state=states.get(uuid),
                last_seen_ms=seen_ms.get(uuid),
                passive=hb.passive if hb else False,
                tags=hb.tags if hb else (),
                running=len(hb.running) if hb else 0,
                jobs_owned=jobs_owned.get(uuid, 0),
            )
        )
    return out
