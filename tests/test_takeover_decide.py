"""Pure takeover decisions: eligibility by policy, destinations, spreading, the guard."""

from __future__ import annotations

import pytest

from schemas.messages import MemberState
from schemas.settings import Settings
from workers.proposals import Candidate, guard_reason
from workers.takeover.decide import choose_quotas, eligible, spread_fewest_first

A, INA, D = MemberState.ACTIVE, MemberState.INACTIVE, MemberState.DEAD
U = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(10)]


def test_spread_fills_the_least_loaded_first() -> None:
    assert spread_fewest_first({"a": 0, "b": 0, "c": 0}, 30) == [("a", 10), ("b", 10), ("c", 10)]
    assert spread_fewest_first({"a": 5, "b": 0, "c": 2}, 4) == [("b", 3), ("c", 1)]
    assert spread_fewest_first({"a": 5, "b": 0, "c": 2}, 10) == [("b", 6), ("c", 4)]
    assert spread_fewest_first({"a": 5, "b": 0, "c": 2}, 11) == [("a", 1), ("b", 6), ("c", 4)]
    assert spread_fewest_first({"a": 1, "b": 1}, 3) == [("a", 2), ("b", 1)]
    assert spread_fewest_first({}, 3) == [] and spread_fewest_first({"a": 0}, 0) == []


@pytest.mark.parametrize("n", [1, 7, 100, 1001])
def test_spread_gives_every_job_and_evens_loads(n: int) -> None:
    levels = {"a": 3, "b": 0, "c": 10, "d": 3}
    quotas = dict(spread_fewest_first(levels, n))
    assert sum(quotas.values()) == n
    final = {u: levels[u] + quotas.get(u, 0) for u in levels}
    receivers = [u for u in levels if quotas.get(u)]
    # every receiver ends at most one above the least loaded member
    assert all(final[u] <= min(final.values()) + 1 for u in receivers)
    assert spread_fewest_first(levels, n) == spread_fewest_first(dict(reversed(levels.items())), n)


def settings(**kw: object) -> Settings:
    return Settings(autotakeover_enabled=True, **kw)  # type: ignore[arg-type]


def test_eligibility_by_policy() -> None:
    assert not eligible(U[0], Settings())[0]  # disabled by default
    assert eligible(U[0], settings())[0]
    static = settings(autotakeover_policy="static", autotakeover_allowed=(U[1],))
    assert eligible(U[1], static)[0]
    ok, why = eligible(U[0], static)
    assert not ok and "not in autotakeover.config.allowed" in why


def cands() -> list[Candidate]:
    return [
        Candidate(U[0], D, 0, jobs_owned=9),
        Candidate(U[1], A, 10, jobs_owned=5, running=0, tags=("eu",)),
        Candidate(U[2], A, 10, jobs_owned=0, running=4),
        Candidate(U[3], A, 10, passive=True),
        Candidate(U[4], INA, 5),
        Candidate(U[5], D, 1),
    ]


def test_any_spreads_over_active_non_passive_members_only() -> None:
    quotas = choose_quotas(cands(), U[0], 9, settings(), seed="p")
    assert dict(quotas) == {U[1]: 2, U[2]: 7}


def test_no_destination_gives_nothing() -> None:
    only_dead = [c for c in cands() if c.state is not A or c.passive]
    assert choose_quotas(only_dead, U[0], 9, settings(), seed="p") == []


def test_remote_execution_policies() -> None:
    re = {"autotakeover_policy": "remoteexecution"}
    load = choose_quotas(cands(), U[0], 4, settings(**re, remote_execution_policy="load"), seed="p")
    assert dict(load) == {U[1]: 4}  # fewest running executions
    rr = choose_quotas(
        cands(), U[0], 4, settings(**re, remote_execution_policy="roundrobin"), seed="p"
    )
    assert dict(rr) == {U[1]: 2, U[2]: 2}
    preset = settings(**re, remote_execution_policy="preset", remote_execution_allowed=(U[2],))
    assert dict(choose_quotas(cands(), U[0], 4, preset, seed="p")) == {U[2]: 4}
    tagged = settings(**re, remote_execution_preferred_tags=("eu",))
    assert dict(choose_quotas(cands(), U[0], 4, tagged, seed="p")) == {U[1]: 4}
    not_active_only = settings(**re, remote_execution_active_only=False)
    assert U[4] in dict(choose_quotas(cands(), U[0], 30, not_active_only, seed="p"))
    rnd = settings(**re, remote_execution_policy="random")
    first = choose_quotas(cands(), U[0], 20, rnd, seed="p1")
    assert first == choose_quotas(cands(), U[0], 20, rnd, seed="p1")
    assert sum(n for _, n in first) == 20 and set(dict(first)) <= {U[1], U[2]}


def test_guard_holds_when_most_members_go_silent_at_once() -> None:
    members = [Candidate(U[i], D if i < 3 else A, 1000) for i in range(5)]
    assert guard_reason(members, 1000, 300, 0.5) is not None  # 3 of 5 silent
    members[2] = Candidate(U[2], A, 1000)
    assert guard_reason(members, 1000, 300, 0.5) is None  # 2 of 5
    two = [Candidate(U[0], D, 1000), Candidate(U[1], D, 1000)]
    assert guard_reason(two, 1000, 300, 0.5) is not None
    one = [Candidate(U[0], D, 1000)]
    assert guard_reason(one, 1000, 300, 0.5) is None  # at least two
    # members silent since long before the window do not count as known
    old = [Candidate(U[i], D, 0) for i in range(5)] + [
        Candidate(U[5], D, 1000),
        Candidate(U[6], A, 1000),
    ]
    assert guard_reason(old, 1000, 300, 0.5) is None
