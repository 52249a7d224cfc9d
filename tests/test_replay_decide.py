"""The pure decisions taken out of the proposal and takeover workers so that the replay
calls the very same functions: cancel, guard, when to check, candidates, the plan."""

from __future__ import annotations

from schemas.messages import Heartbeat, MemberState
from schemas.settings import Settings
from workers.proposals import Candidate, cancel_reason, candidates, check_at_ms, guard_holds
from workers.takeover.decide import TakeoverPlan, plan_takeover

A, B, C = (f"0000000{i}-0000-4000-8000-000000000000" for i in (1, 2, 3))
ACTIVE, DEAD = MemberState.ACTIVE, MemberState.DEAD


def test_a_due_proposal_goes_on_only_while_its_member_is_dead_and_unheard() -> None:
    assert cancel_reason(DEAD, 1_000, 1_000) is None
    assert cancel_reason(DEAD, 1_001, 1_000) == "member is dead again"  # heard since: back
    assert cancel_reason(ACTIVE, 1_000, 1_000) == "member is active again"
    assert cancel_reason(MemberState.INACTIVE, 900, 1_000) == "member is inactive again"
    assert cancel_reason(None, 0, 1_000) == "member is None again"


def test_the_guard_holds_until_a_release_after_the_proposal() -> None:
    assert guard_holds("mass failure", released_ms=0, proposed_at_ms=5_000)
    assert guard_holds("mass failure", released_ms=4_999, proposed_at_ms=5_000)
    assert not guard_holds("mass failure", released_ms=5_000, proposed_at_ms=5_000)
    assert not guard_holds(None, released_ms=0, proposed_at_ms=5_000)
    assert not guard_holds("", released_ms=0, proposed_at_ms=5_000)


def test_a_proposal_is_checked_once_due_and_not_before_its_next_check() -> None:
    assert check_at_ms(1_000, 0) == 1_000
    assert check_at_ms(1_000, 2_500) == 2_500


def test_candidates_are_every_member_the_view_knows_with_its_last_heartbeat() -> None:
    hb = Heartbeat(
        uuid=B,
        name="b",
        seq=1,
        started_at_ms=0,
        sent_at_ms=0,
        tags=("x",),
        running=("e1",),
        passive=True,
    )
    got = candidates({A: ACTIVE, B: ACTIVE}, {B: 7, C: 9}, {B: hb}, {A: 3})
    assert got == [
        Candidate(A, ACTIVE, None, jobs_owned=3),
        Candidate(B, ACTIVE, 7, passive=True, tags=("x",), running=1),
        Candidate(C, None, 9),
    ]


def test_the_takeover_plan_skips_no_jobs_finds_no_destination_or_commits() -> None:
    settings = Settings()
    live = [Candidate(A, DEAD, 1), Candidate(B, ACTIVE, 5, jobs_owned=2), Candidate(C, ACTIVE, 5)]
    assert plan_takeover(live, A, 0, settings, seed="p") == TakeoverPlan(
        "skipped", "the member owns no scheduled jobs"
    )
    alone = [Candidate(A, DEAD, 1), Candidate(B, ACTIVE, 5, passive=True)]
    assert plan_takeover(alone, A, 3, settings, seed="p").outcome == "no_destination"
    plan = plan_takeover(live, A, 4, settings, seed="p")
    assert plan == TakeoverPlan("commit", quotas=((B, 1), (C, 3)))  # fewest-owned first
