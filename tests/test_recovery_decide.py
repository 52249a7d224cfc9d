"""Pure recovery decisions: eligibility by policy, destinations, the spread of retries,
retry ids, and the plan of one recovery."""

from __future__ import annotations

import pytest

from schemas.messages import MemberState
from schemas.settings import RecoverPolicy, Settings
from workers.proposals import Candidate
from workers.recovery.decide import (
    assign_retries,
    destinations,
    eligible,
    next_retry,
    plan_recovery,
    retry_id,
)
from workers.store import NewExecution, RunningExecution

A, INA, D = MemberState.ACTIVE, MemberState.INACTIVE, MemberState.DEAD
U = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(10)]
DEAD = U[9]
NOW_MS = 1_000_000


def member(
    uuid: str, state: MemberState | None = A, *, running: int = 0, passive: bool = False
) -> Candidate:
    return Candidate(uuid=uuid, state=state, last_seen_ms=0, passive=passive, running=running)


def execution(
    id_: str, *, retry_count: int = 2, attempt: int = 1, delay_s: float = 1.5
) -> RunningExecution:
    return RunningExecution(
        id=id_,
        job_id=f"job-{id_}",
        member_uuid=DEAD,
        attempt=attempt,
        retry_of=None if attempt == 1 else f"first-{id_}",
        retry_count=retry_count,
        retry_delay_s=delay_s,
    )


def test_eligible_by_policy() -> None:
    assert eligible(DEAD, Settings()) == (False, "recoverExecutions disabled")
    assert eligible(DEAD, Settings(recover_enabled=True))[0]
    static = Settings(
        recover_enabled=True, recover_policy=RecoverPolicy.STATIC, recover_allowed=(U[1],)
    )
    assert eligible(U[1], static)[0]
    ok, why = eligible(DEAD, static)
    assert not ok and "not in recoverExecutions.config.allowed" in why


def test_destinations_are_active_non_passive_never_the_dead_member() -> None:
    members = [
        member(DEAD),  # the dead member itself, even if the view still said active
        member(U[1], D),
        member(U[2], INA),
        member(U[3], passive=True),
        member(U[4], None),  # never heard
        member(U[5], running=3),
        member(U[6], running=1),
        member(U[7], running=1),
    ]
    assert [m.uuid for m in destinations(members, DEAD)] == [U[6], U[7], U[5]]


def test_retries_go_to_the_fewest_running_first_deterministically() -> None:
    pool = destinations([member(U[1], running=2), member(U[2]), member(U[3])], DEAD)
    assert assign_retries(["e2", "e1"], pool) == {"e1": U[2], "e2": U[3]}
    four = assign_retries(["e1", "e2", "e3", "e4"], pool)
    assert sorted(four.values()) == [U[2], U[2], U[3], U[3]]  # loads end 2, 2, 2
    five = assign_retries(["e1", "e2", "e3", "e4", "e5"], pool)
    assert sorted(five.values()) == [U[2], U[2], U[2], U[3], U[3]]  # loads end 2, 3, 2
    assert assign_retries(["e4", "e3", "e2", "e1"], list(reversed(pool))) == four
    assert assign_retries(["e1"], []) == {}


def test_retry_id_is_stable_per_proposal_and_execution() -> None:
    assert retry_id("p1", "e1") == retry_id("p1", "e1")
    assert len({retry_id("p1", "e1"), retry_id("p2", "e1"), retry_id("p1", "e2")}) == 3


@pytest.mark.parametrize(
    ("attempt", "retry_count", "expected_attempt"),
    [(1, 0, None), (1, 1, 2), (2, 2, 3), (3, 2, None)],
)
def test_next_retry_counts_attempts(
    attempt: int, retry_count: int, expected_attempt: int | None
) -> None:
    retry = next_retry(
        execution_id="e",
        retry_of=None if attempt == 1 else "first",
        job_id="j",
        attempt=attempt,
        retry_count=retry_count,
        retry_delay_s=0.25,
        to_uuid=U[1],
        now_ms=NOW_MS,
        new_id="n",
    )
    if expected_attempt is None:
        assert retry is None
    else:
        assert retry == NewExecution(
            id="n",
            job_id="j",
            member_uuid=U[1],
            fire_ms=NOW_MS + 250,
            attempt=expected_attempt,
            retry_of="e" if attempt == 1 else "first",
        )


def test_plan_marks_every_running_execution_and_retries_those_with_retries_left() -> None:
    running = [
        execution("a"),
        execution("b", retry_count=0),
        execution("c", attempt=3, retry_count=2),  # its last attempt
        execution("d", attempt=2, retry_count=2, delay_s=0),
    ]
    plan = plan_recovery(
        proposal_id="p",
        dead_uuid=DEAD,
        running=running,
        waiting=2,
        members=[member(DEAD), member(U[1]), member(U[2]), member(U[3], running=5)],
        now_ms=NOW_MS,
    )
    assert plan.outcome == "commit"
    assert plan.mark == ("a", "b", "c", "d")
    assert set(plan.retries) == {"a", "d"}
    a, d = plan.retries["a"], plan.retries["d"]
    assert (a.attempt, a.retry_of, a.fire_ms, a.id) == (2, "a", NOW_MS + 1500, retry_id("p", "a"))
    assert (d.attempt, d.retry_of, d.fire_ms) == (3, "first-d", NOW_MS)
    assert (a.member_uuid, d.member_uuid) == (U[1], U[2])  # the least loaded, by uuid
    assert plan.reschedule_to == U[1]  # the least loaded destination takes the waiting ones


def test_plan_without_destination_changes_nothing() -> None:
    plan = plan_recovery(
        proposal_id="p",
        dead_uuid=DEAD,
        running=[execution("a")],
        waiting=0,
        members=[member(DEAD), member(U[1], passive=True), member(U[2], D)],
        now_ms=NOW_MS,
    )
    assert (plan.outcome, plan.mark, dict(plan.retries)) == ("no_destination", (), {})
    # nothing to retry and nothing waiting: marking needs no destination
    plan = plan_recovery(
        proposal_id="p",
        dead_uuid=DEAD,
        running=[execution("a", retry_count=0)],
        waiting=0,
        members=[],
        now_ms=NOW_MS,
    )
    assert (plan.outcome, plan.mark, dict(plan.retries), plan.reschedule_to) == (
        "commit",
        ("a",),
        {},
        None,
    )


def test_plan_with_nothing_to_recover_is_skipped() -> None:
    plan = plan_recovery(
        proposal_id="p", dead_uuid=DEAD, running=[], waiting=0, members=[], now_ms=NOW_MS
    )
    assert plan.outcome == "skipped" and plan.mark == ()
