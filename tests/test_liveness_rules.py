"""The pure liveness rules, on a moved clock (no Redis, no sleeping)."""

from __future__ import annotations

import pytest

from schemas.messages import MemberState
from workers.liveness.rules import (
    MemberObservation,
    Thresholds,
    Transition,
    decide,
    next_deadline_ms,
    state_at,
)

TH = Thresholds.from_seconds(150, 300)
T0 = 1_700_000_000_000  # the view started long before the member was last seen
SEEN = T0 + 3_600_000

A, INA, D = MemberState.ACTIVE, MemberState.INACTIVE, MemberState.DEAD


@pytest.mark.parametrize(
    ("age_ms", "expected"),
    [
        (0, A),
        (149_999, A),
        (150_000, INA),  # considerInactive reached exactly
        (299_999, INA),
        (300_000, D),  # considerDead reached exactly
        (10_000_000, D),
    ],
)
def test_both_boundaries_exactly(age_ms: int, expected: MemberState) -> None:
    assert state_at(SEEN, SEEN + age_ms, T0, TH) is expected


def test_next_deadline_walks_the_boundaries() -> None:
    assert next_deadline_ms(SEEN, SEEN, T0, TH) == SEEN + 150_000
    assert next_deadline_ms(SEEN, SEEN + 150_000, T0, TH) == SEEN + 300_000
    assert next_deadline_ms(SEEN, SEEN + 300_000, T0, TH) is None


def test_grace_after_a_lost_view() -> None:
    """A last heartbeat far older than the view: inactive at once, dead only after considerDead
    of observation since the view started."""
    started = SEEN + 10_000_000
    assert state_at(SEEN, started, started, TH) is INA
    assert state_at(SEEN, started + 299_999, started, TH) is INA
    assert state_at(SEEN, started + 300_000, started, TH) is D
    assert next_deadline_ms(SEEN, started, started, TH) == started + 300_000


def test_member_never_heard_since_the_view_began_ages_from_the_view_start() -> None:
    started = T0
    assert state_at(None, started + 149_999, started, TH) is A
    assert state_at(None, started + 150_000, started, TH) is INA
    assert state_at(None, started + 300_000, started, TH) is D
    obs = [MemberObservation("m", None, None)]
    assert decide(obs, started + 150_000, started, TH) == [Transition("m", None, INA, None)]


def test_dead_member_that_returns_becomes_active() -> None:
    back = SEEN + 400_000
    obs = [MemberObservation("m", D, back)]  # the view holds the new heartbeat, state still dead
    assert decide(obs, back + 10, T0, TH) == [Transition("m", D, A, back)]


def test_no_transition_when_state_already_matches() -> None:
    obs = [MemberObservation("a", A, SEEN), MemberObservation("d", D, SEEN - 400_000)]
    assert decide(obs, SEEN + 1, T0, TH) == []


@pytest.mark.parametrize("skew_ms", [-3_600_000, 0, 3_600_000])
def test_member_clock_skew_changes_nothing(skew_ms: int) -> None:
    """Heartbeat times are Redis entry ids; a member's own clock (sent_at_ms) is not an input.

    The same server-clock history gives the same states whatever the member's clock said."""
    from schemas.messages import Heartbeat

    hb = Heartbeat(
        uuid="6f9619ff-8b86-d011-b42d-00cf4fc964ff",
        name="a",
        seq=1,
        started_at_ms=0,
        sent_at_ms=SEEN + skew_ms,
    )
    assert hb.sent_at_ms == SEEN + skew_ms
    for age_ms, expected in ((0, A), (150_000, INA), (300_000, D)):
        assert state_at(SEEN, SEEN + age_ms, T0, TH) is expected


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="considerInactive"):
        Thresholds.from_seconds(300, 150)
    assert Thresholds.from_seconds(0.6, 1.2) == Thresholds(600, 1200)


def test_member_first_known_after_the_view_began_gets_a_full_considerdead() -> None:
    """A job's new owner the view never heard: silence counts from when the view learnt of it."""
    started = T0
    known = T0 + 3_600_000
    assert state_at(None, known + 149_999, started, TH, known_since_ms=known) is A
    assert state_at(None, known + 150_000, started, TH, known_since_ms=known) is INA
    assert state_at(None, known + 299_999, started, TH, known_since_ms=known) is INA
    assert state_at(None, known + 300_000, started, TH, known_since_ms=known) is D
    assert next_deadline_ms(None, known, started, TH, known_since_ms=known) == known + 150_000
    obs = [MemberObservation("m", INA, None, known_since_ms=known)]
    assert decide(obs, known + 299_999, started, TH) == []
    assert decide(obs, known + 300_000, started, TH) == [Transition("m", INA, D, None)]
