"""Pure decisions of the proposal lifecycle that the takeover and recovery proposals share.

:class:`workers.proposals.lifecycle.Lifecycle` calls these (its drivers: the workers on
Redis and SQL, the replay on a virtual clock). Nothing here reads a clock, Redis or SQL:
times are Redis server milliseconds passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.messages import MemberState
from workers.proposals.candidates import Candidate

__all__ = [
    "HELD_RECHECK_MS",
    "cancel_reason",
    "check_at_ms",
    "guard_holds",
    "guard_reason",
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
    :func:`guard_reason`) and no ``qwc takeover release``
    (``released_ms``, 0: never) came after the proposal was made."""
    return bool(reason) and released_ms < proposed_at_ms


def guard_reason(
    members: Sequence[Candidate],
    dead_last_seen_ms: int,
    dead_ms: int,
    fraction: float,
) -> str | None:
    """The mass-failure guard: why takeovers must be held, or None.

    Members heard within one considerDead window before the dead member's last heartbeat
    count as known; of them, those silent now (inactive or dead) would turn dead within that
    window. More than ``fraction`` of the known, and at least two, means the observer is the
    likely failure, not the members.
    """
    start = dead_last_seen_ms - dead_ms
    known = [m for m in members if m.last_seen_ms is None or m.last_seen_ms >= start]
    silent = [m for m in known if m.state in (MemberState.INACTIVE, MemberState.DEAD)]
    if len(silent) >= 2 and len(silent) > fraction * len(known):
        return (
            f"mass failure: {len(silent)} of {len(known)} members went silent within one "
            f"considerDead window ({dead_ms / 1000:g} s); the observer is the likely failure. "
            "Takeovers are held until `qwc takeover release`."
        )
    return None
