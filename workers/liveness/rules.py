"""Pure liveness rules: which state a member is in at ``now``, and when that next changes.

A member is ``active`` while the age of its last heartbeat is below considerInactive,
``inactive`` while it is below considerDead, and ``dead`` after. Ages use the Redis server
clock only (stream entry ids and ``TIME``), never a member's clock.

Grace rule: the view has a start time (``view_started_ms``, when it was created or found
lost, or first read on another Redis server after a failover or restart). Nobody is
declared dead before considerDead of observation since then, whatever the age of the last
heartbeat it holds. A member known to the store that never
heartbeat in this view counts as last seen when the view first knew of it
(``known_since_ms``: the view's start for members the store had then, later for members
that appeared later, such as a job's new owner), so it turns inactive and dead like any
silent member, after a full considerDead of observation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.messages import MembershipChange, MemberState

__all__ = [
    "MemberObservation",
    "Thresholds",
    "Transition",
    "active_after_ms",
    "decide",
    "heard_may_change",
    "membership_change",
    "next_deadline_ms",
    "state_at",
]


@dataclass(frozen=True)
class Thresholds:
    """considerInactive and considerDead in milliseconds (inactive_ms < dead_ms)."""

    inactive_ms: int
    dead_ms: int

    @classmethod
    def from_seconds(cls, consider_inactive_s: float, consider_dead_s: float) -> Thresholds:
        if not 0 < consider_inactive_s < consider_dead_s:
            raise ValueError("need 0 < considerInactive < considerDead")
        return cls(round(consider_inactive_s * 1000), round(consider_dead_s * 1000))


@dataclass(frozen=True)
class MemberObservation:
    """What the view holds of one member (``last_seen_ms`` None: never heard in this view)."""

    uuid: str
    state: MemberState | None
    last_seen_ms: int | None
    known_since_ms: int | None = None  # when the view first knew of a member never heard


@dataclass(frozen=True)
class Transition:
    """A state change to apply if the member's view is still ``from_state`` / ``last_seen_ms``."""

    uuid: str
    from_state: MemberState | None
    to_state: MemberState
    last_seen_ms: int | None


def _basis_ms(last_seen_ms: int | None, view_started_ms: int, known_since_ms: int | None) -> int:
    if last_seen_ms is not None:
        return last_seen_ms
    return max(view_started_ms, known_since_ms or view_started_ms)


def active_after_ms(now_ms: int, th: Thresholds) -> int:
    """The considerInactive boundary at ``now_ms``: a member last heard (or known) after this
    time is active, one heard at or before it is not (its age reached considerInactive).
    The view's sweep reads, as candidates, the members watched at or before it."""
    return now_ms - th.inactive_ms


def state_at(
    last_seen_ms: int | None,
    now_ms: int,
    view_started_ms: int,
    th: Thresholds,
    known_since_ms: int | None = None,
) -> MemberState:
    """The state of a member at ``now_ms`` (all Redis server milliseconds)."""
    basis_ms = _basis_ms(last_seen_ms, view_started_ms, known_since_ms)
    if basis_ms > active_after_ms(now_ms, th):
        return MemberState.ACTIVE
    age_ms = now_ms - basis_ms
    observed_ms = now_ms - view_started_ms
    if age_ms < th.dead_ms or observed_ms < th.dead_ms:
        return MemberState.INACTIVE
    return MemberState.DEAD


def next_deadline_ms(
    last_seen_ms: int | None,
    now_ms: int,
    view_started_ms: int,
    th: Thresholds,
    known_since_ms: int | None = None,
) -> int | None:
    """The first time after ``now_ms`` at which the member's state changes if it stays silent.

    None when it is already dead (nothing changes without a heartbeat).
    """
    basis_ms = _basis_ms(last_seen_ms, view_started_ms, known_since_ms)
    inactive_at = basis_ms + th.inactive_ms
    if now_ms < inactive_at:
        return inactive_at
    dead_at = max(basis_ms, view_started_ms) + th.dead_ms
    return dead_at if now_ms < dead_at else None


def decide(
    members: Iterable[MemberObservation], now_ms: int, view_started_ms: int, th: Thresholds
) -> list[Transition]:
    """The transitions due at ``now_ms``: one for each member whose state differs from its rule."""
    out: list[Transition] = []
    for m in members:
        to_state = state_at(m.last_seen_ms, now_ms, view_started_ms, th, m.known_since_ms)
        if to_state != m.state:
            out.append(Transition(m.uuid, m.state, to_state, m.last_seen_ms))
    return out


def heard_may_change(
    state: MemberState | None, last_seen_ms: int, now_ms: int, th: Thresholds
) -> bool:
    """Whether a member in ``state``, heard at ``last_seen_ms`` (or later), may need a
    transition at ``now_ms``: False only when it is active and heard after
    :func:`active_after_ms`, so that its rule says active too, whatever the view's start,
    and a later heartbeat cannot change that (it is only younger). A heartbeat of such a
    member need not be decided (its state need not even be read)."""
    return state is not MemberState.ACTIVE or last_seen_ms <= active_after_ms(now_ms, th)


def membership_change(t: Transition, *, at_ms: int, name: str, reason: str) -> MembershipChange:
    """The change ``t`` as the membership stream carries it, applied at ``at_ms`` (server ms).

    ``reason``: ``heartbeat`` (decided on a heartbeat) or ``silence`` (on a deadline)."""
    return MembershipChange(
        uuid=t.uuid,
        name=name,
        from_state=t.from_state,
        to_state=t.to_state,
        at_ms=at_ms,
        last_seen_ms=t.last_seen_ms or 0,
        reason=reason,
    )
