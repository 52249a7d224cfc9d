"""The proposal lifecycle's transitions, in process: events in, actions out (no Redis, SQL
or clock; the workers and the replay drive this same code)."""

from __future__ import annotations

from typing import Any

from schemas.messages import MemberState, TakeoverProposal
from workers.proposals import HELD_RECHECK_MS, Lifecycle, Rules
from workers.proposals.lifecycle import (
    CheckGuard,
    Decide,
    Done,
    Hold,
    NotProposed,
    Publish,
    Record,
)

DEAD, ACTIVE = MemberState.DEAD, MemberState.ACTIVE
M = "00000000-0000-4000-8000-000000000001"
DELAY_MS, SLEEP_MS = 300, 4_000


def lifecycle(*, enabled: bool = True, allowed: bool = True) -> Lifecycle[str, Any]:
    rules = Rules(
        what="takeover",
        message=TakeoverProposal,
        stream="takeover",
        group="takeover",
        attempt_key=lambda uuid: f"attempt:{uuid}",
        enabled=enabled,
        policy="any",
        delay_ms=DELAY_MS,
        sleep_ms=SLEEP_MS,
        eligible=lambda uuid: (allowed, "allowed" if allowed else "not in allowed"),
    )
    return Lifecycle(rules, ids=lambda what, uuid, at_ms: f"{what}-{at_ms}")


def proposed(lc: Lifecycle[str, Any], at_ms: int = 1_000, last_seen_ms: int = 0) -> str:
    """A death at ``at_ms`` published and claimed; returns the token (the proposal id)."""
    (publish,) = lc.dead(M, at_ms, last_seen_ms)
    assert isinstance(publish, Publish)
    p = publish.proposal
    lc.published(p)
    assert lc.claimed(p.id, p) and not lc.claimed(p.id, p)  # a redelivery holds it once
    return str(p.id)


def test_a_death_is_published_due_after_the_delay() -> None:
    lc = lifecycle()
    (a,) = lc.dead(M, 1_000, 900)
    assert isinstance(a, Publish) and a.by == "death"
    p = a.proposal
    assert (p.id, p.dead_uuid, p.proposed_at_ms, p.due_at_ms, p.last_seen_ms) == (
        "takeover-1000",
        M,
        1_000,
        1_000 + DELAY_MS,
        900,
    )
    lc.published(p)
    lc.claimed(p.id, p)
    assert list(lc.due_now(1_000 + DELAY_MS - 1)) == []
    assert list(lc.due_now(1_000 + DELAY_MS)) == [p.id]
    assert lc.next_check_ms() == 1_000 + DELAY_MS


def test_an_ineligible_member_is_skipped_and_recorded_only_while_enabled() -> None:
    (skip,) = lifecycle(allowed=False).dead(M, 1_000, 0)
    assert isinstance(skip, Record) and (skip.outcome, skip.detail) == ("skipped", "not in allowed")
    assert skip.proposal.id == f"skip-{M}-1000"
    assert lifecycle(enabled=False, allowed=False).dead(M, 1_000, 0) == []


def test_no_second_proposal_while_one_is_in_flight_or_its_window_is_open() -> None:
    lc = lifecycle()
    token = proposed(lc)
    (busy,) = lc.dead(M, 1_100, 0)
    assert isinstance(busy, NotProposed) and "in flight" in busy.reason
    assert not lc.scan_may_propose(M, 1_100)
    lc.due(token, 1_300, ACTIVE, 1_200)  # cancelled: the window ends sleep after it
    (window,) = lc.dead(M, 2_000, 0)
    assert isinstance(window, NotProposed) and window.window_end_ms == 1_300 + SLEEP_MS
    assert not lc.scan_may_propose(M, 1_300 + SLEEP_MS - 1)
    assert lc.scan_may_propose(M, 1_300 + SLEEP_MS)
    (again,) = lc.dead(M, 1_300 + SLEEP_MS, 0, by="scan")
    assert isinstance(again, Publish) and again.by == "scan"


def test_a_member_back_or_heard_since_cancels_the_proposal() -> None:
    for state, seen_ms in ((ACTIVE, 0), (DEAD, 50)):  # back; still dead but heard since
        lc = lifecycle()
        token = proposed(lc, last_seen_ms=10)
        record, done = lc.due(token, 1_300, state, seen_ms)
        assert isinstance(record, Record) and record.outcome == "cancelled"
        assert isinstance(done, Done) and done.window_end_ms == 1_300 + SLEEP_MS
        assert lc.tracked == {} and lc.busy == {}


def test_a_still_dead_member_goes_to_the_guard_then_to_the_kind() -> None:
    lc = lifecycle()
    token = proposed(lc)
    (check,) = lc.due(token, 1_300, DEAD, 0)
    assert isinstance(check, CheckGuard) and check.token == token
    (decide,) = lc.guard(token, 1_300, None, 0)
    assert isinstance(decide, Decide)
    (done,) = lc.committed(token, 1_350)
    assert isinstance(done, Done) and done.outcome == "committed"
    assert done.window_end_ms == 1_350 + SLEEP_MS and lc.tracked == {}


def test_the_guard_holds_records_once_and_rechecks_until_a_later_release() -> None:
    lc = lifecycle()
    token = proposed(lc)
    hold, record = lc.guard(token, 1_300, "mass failure", 0)
    assert isinstance(hold, Hold) and hold.first and hold.recheck_ms == 1_300 + HELD_RECHECK_MS
    assert isinstance(record, Record) and record.outcome == "held"
    assert list(lc.due_now(1_300 + HELD_RECHECK_MS - 1)) == []
    (again,) = lc.guard(token, 2_300, "mass failure", 500)  # released before it was made
    assert isinstance(again, Hold) and not again.first
    (decide,) = lc.guard(token, 3_300, "mass failure", 3_000)  # released after
    assert isinstance(decide, Decide)


def test_a_decision_that_changes_nothing_is_recorded_and_keeps_the_window() -> None:
    lc = lifecycle()
    token = proposed(lc, at_ms=1_000)
    record, done = lc.failed(token, 6_000, "no_destination", "no active member")
    assert isinstance(record, Record) and record.outcome == "no_destination"
    assert isinstance(done, Done) and done.window_end_ms == 6_000 + SLEEP_MS


def test_a_proposal_delivered_again_after_its_decision_is_done_without_a_record() -> None:
    lc = lifecycle()
    token = proposed(lc)
    lc.due(token, 1_300, DEAD, 0)
    (done,) = lc.decided(token, 1_300, "committed")  # not held, whatever the guard says
    assert isinstance(done, Done) and done.outcome == "committed"
    assert lc.tracked == {} and lc.busy == {}
