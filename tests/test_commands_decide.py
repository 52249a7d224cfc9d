"""Pure remote-execution decisions: who may receive a remote execution, and who does."""

from __future__ import annotations

from collections import Counter

from schemas.messages import MemberState
from schemas.settings import Settings
from workers.commands.decide import (
    Choice,
    choose_member,
    receiving_states,
    remote_destinations,
    target_problem,
)
from workers.proposals import Candidate

A, INA, D = MemberState.ACTIVE, MemberState.INACTIVE, MemberState.DEAD
U = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(10)]


def settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


def members() -> list[Candidate]:
    return [
        Candidate(U[0], D, 0),
        Candidate(U[1], A, 10, running=3, tags=("eu",)),
        Candidate(U[2], A, 10, running=1),
        Candidate(U[3], A, 10, passive=True),
        Candidate(U[4], INA, 5, running=0),
        Candidate(U[5], A, 10, running=1),
    ]


def uuids(cands: list[Candidate]) -> list[str]:
    return [c.uuid for c in cands]


def test_destinations_are_live_non_passive_and_not_excluded() -> None:
    assert uuids(remote_destinations(members(), settings())) == [U[1], U[2], U[5]]
    assert uuids(remote_destinations(members(), settings(), exclude=(U[2],))) == [U[1], U[5]]
    loose = settings(remote_execution_active_only=False)
    assert receiving_states(loose) == {A, INA}
    assert uuids(remote_destinations(members(), loose)) == [U[1], U[2], U[4], U[5]]


def test_destinations_narrow_to_preset_and_preferred_tags() -> None:
    preset = settings(remote_execution_policy="preset", remote_execution_allowed=(U[5], U[3]))
    assert uuids(remote_destinations(members(), preset)) == [U[5]]  # U[3] is passive
    tagged = settings(remote_execution_preferred_tags=("eu", "us"))
    assert uuids(remote_destinations(members(), tagged)) == [U[1]]
    nobody_tagged = settings(remote_execution_preferred_tags=("asia",))
    assert uuids(remote_destinations(members(), nobody_tagged)) == [U[1], U[2], U[5]]


def choose(
    s: Settings,
    *,
    owner: str | None = U[2],
    turn: int = 1,
    seed: str = "c1",
    exclude: tuple[str, ...] = (),
) -> Choice:
    return choose_member(members(), s, owner_uuid=owner, turn=turn, seed=seed, exclude=exclude)


def test_policy_none_is_the_owner_else_the_least_loaded() -> None:
    assert choose(settings()).uuid == U[2]
    passive_owner = choose(settings(), owner=U[3])
    assert passive_owner.uuid == U[3]  # it fires that job anyway
    dead_owner = choose(settings(), owner=U[0])
    assert dead_owner.uuid == U[2]  # fewest running (1), lowest uuid among U[2], U[5]
    assert f"owner {U[0]} is dead" in dead_owner.reason
    excluded = choose(settings(), owner=U[2], exclude=(U[2],))
    assert excluded.uuid == U[5] and "excluded" in excluded.reason
    inactive_owner = choose(settings(), owner=U[4])
    assert inactive_owner.uuid != U[4]
    assert choose(settings(remote_execution_active_only=False), owner=U[4]).uuid == U[4]
    unknown = choose(settings(), owner=U[9])
    assert unknown.uuid == U[2] and "unknown" in unknown.reason


def test_round_robin_takes_turns_in_uuid_order() -> None:
    rr = settings(remote_execution_policy="roundrobin")
    assert [choose(rr, turn=t).uuid for t in range(1, 7)] == [U[1], U[2], U[5]] * 2


def test_random_is_seeded_by_the_command_id_and_spreads() -> None:
    rnd = settings(remote_execution_policy="random")
    assert choose(rnd, seed="x").uuid == choose(rnd, seed="x").uuid
    picks = Counter(choose(rnd, seed=f"c{i}").uuid for i in range(300))
    assert set(picks) == {U[1], U[2], U[5]}
    assert min(picks.values()) > 50


def test_preset_is_the_first_allowed_that_may_receive() -> None:
    preset = settings(remote_execution_policy="preset", remote_execution_allowed=(U[0], U[5], U[1]))
    first = choose(preset)
    assert first.uuid == U[5] and "Preset" in first.reason  # U[0] is dead
    assert choose(preset, exclude=(U[5],)).uuid == U[1]


def test_load_is_the_fewest_running() -> None:
    load = settings(remote_execution_policy="load")
    assert choose(load).uuid == U[2]
    assert choose(load, exclude=(U[2],)).uuid == U[5]


def test_nobody_may_receive_it() -> None:
    gone = [Candidate(U[0], D, 0), Candidate(U[3], A, 10, passive=True)]
    for policy in ("none", "random", "roundrobin", "load"):
        s = settings(remote_execution_policy=policy)
        choice = choose_member(gone, s, owner_uuid=U[0], turn=1, seed="c")
        assert choice.uuid is None
        assert "no active, non-passive member may receive it" in choice.reason
    preset = settings(remote_execution_policy="preset", remote_execution_allowed=(U[9],))
    choice = choose_member(members(), preset, owner_uuid=U[2], turn=1, seed="c")
    assert choice.uuid is None and "remoteExecution.config.allowed" in choice.reason


def test_a_named_target_must_be_alive_and_known() -> None:
    assert target_problem(U[1], A) is None
    assert target_problem(U[1], INA) is None
    assert target_problem(U[1], D) == f"member {U[1]} is dead"
    unknown = target_problem(U[1], None)
    assert unknown is not None and "unknown" in unknown
