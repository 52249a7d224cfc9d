"""The recordings of tests/data/replay (live runs of real processes, made by
tests/data/make_recordings.py) replayed: the decisions of each scenario, the replay
agreeing with what the workers recorded, and what-ifs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workers.replay.diff import diff
from workers.replay.engine import ReplayResult, replay
from workers.replay.fileformat import read_recording
from workers.replay.settings import replay_settings

DATA = Path(__file__).parent / "data" / "replay"
CM = "qwcontrol.clusterMode."
TOLERANCE_MS = 300  # the liveness live tests' bound on a worker's lateness
SCENARIOS = ["killed", "paused", "flapping", "mass_failure", "returns_in_sleep"]


def member(scenario: int, i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{scenario:012x}"


def run(name: str, *sets: str) -> tuple[ReplayResult, dict[str, Any]]:
    with read_recording(DATA / f"{name}.qwcrec") as rec:
        result = replay(rec, replay_settings(rec.header.settings, sets=sets))
        found = diff(rec, result.events, tolerance_ms=TOLERANCE_MS, early_ms=200)
    return result, found


def states(result: ReplayResult, uuid: str) -> list[str]:
    return [
        f"{e.data['from']}->{e.data['to']}"
        for e in result.events
        if e.kind == "state" and e.member == uuid
    ]


def decided(result: ReplayResult, uuid: str, what: str) -> list[str]:
    return [
        e.data["outcome"]
        for e in result.events
        if e.kind == "decided" and e.member == uuid and e.data["what"] == what
    ]


def audit(name: str, what: str) -> list[tuple[str, str | None, int, dict[str, int]]]:
    with read_recording(DATA / f"{name}.qwcrec") as rec:
        rows = rec.snapshot.takeovers if what == "takeover" else rec.snapshot.recoveries
        return sorted((r.dead_uuid, r.outcome, r.count, r.destinations) for r in rows)


def replayed(result: ReplayResult, what: str) -> list[tuple[str, str | None, int, dict[str, int]]]:
    final: dict[str, Any] = {}
    for e in result.events:
        if e.kind == "decided" and e.data["what"] == what:
            final[e.data["proposal"]] = e
    out = []
    for e in final.values():  # jobs (takeover) and marked (recovery) only when committed
        n = len(e.data.get("jobs", e.data.get("marked", [])))
        out.append((e.member, e.data["outcome"], n, e.data.get("destinations", {})))
    return sorted(out)


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_replay_agrees_with_what_the_workers_recorded(name: str) -> None:
    result, found = run(name)
    assert found["differences"] == []
    assert found["matched"]["membership"] >= 3
    # the same decisions as the store's audit rows: member, outcome, jobs/executions, where
    assert replayed(result, "takeover") == audit(name, "takeover")
    assert replayed(result, "recovery") == audit(name, "recovery")


def test_killed_member_inactive_dead_on_time_jobs_and_execution_recovered() -> None:
    result, _ = run("killed")
    victim, two, three = member(1, 1), member(1, 2), member(1, 3)
    assert states(result, victim) == ["None->active", "active->inactive", "inactive->dead"]
    assert states(result, two) == states(result, three) == ["None->active"]
    inactive, dead = [e for e in result.events if e.member == victim and e.kind == "state"][1:]
    assert inactive.at_ms == inactive.data["last_seen_ms"] + 600
    assert dead.at_ms == dead.data["last_seen_ms"] + 1200
    (take,) = [e for e in result.events if e.kind == "decided" and e.data["what"] == "takeover"]
    assert take.at_ms == dead.at_ms + 500 and take.data["outcome"] == "committed"
    assert len(take.data["jobs"]) == 7 and set(take.data["destinations"]) == {two, three}
    (rec,) = [e for e in result.events if e.kind == "decided" and e.data["what"] == "recovery"]
    (retry,) = rec.data["retries"]
    assert rec.data["marked"] == [retry["execution"]] and retry["attempt"] == 2
    assert retry["to"] in (two, three)


def test_paused_member_taken_over_then_back_and_the_what_if() -> None:
    result, _ = run("paused")
    paused = member(2, 1)
    assert states(result, paused)[-2:] == ["inactive->dead", "dead->active"]
    assert decided(result, paused, "takeover") == ["committed"]
    assert decided(result, paused, "recovery") == ["skipped"]  # it ran nothing
    # it was silent less than 3 s: with considerDead = 3 it is never dead, nothing moves
    what_if, found = run("paused", f"{CM}heartbeat.considerDead=3")
    assert states(what_if, paused) == ["None->active", "active->inactive", "inactive->active"]
    assert [e for e in what_if.events if e.kind in ("proposed", "decided")] == []
    missing = {(d["stream"], d["what"]) for d in found["differences"]}
    assert missing == {
        ("membership", "only recorded"),
        ("membership", "only replayed"),
        ("takeover", "only recorded"),
        ("recovery", "only recorded"),
    }


def test_flapping_member_inactive_and_back_four_times_never_proposed() -> None:
    result, _ = run("flapping")
    flapper = member(3, 1)
    assert (
        states(result, flapper) == ["None->active"] + ["active->inactive", "inactive->active"] * 4
    )
    assert [e for e in result.events if e.kind != "state"] == []


def test_mass_failure_held_until_the_release_then_all_to_the_survivor() -> None:
    result, _ = run("mass_failure")
    victims, survivor = [member(4, i) for i in (1, 2, 3)], member(4, 4)
    for v in victims:
        assert states(result, v)[-1] == "inactive->dead"
        assert decided(result, v, "takeover") == ["held", "committed"]
        assert decided(result, v, "recovery") == ["held", "skipped"]
    moved = [e for e in result.events if e.data.get("outcome") == "committed"]
    assert {j["to"] for e in moved for j in e.data["jobs"]} == {survivor}
    assert sum(len(e.data["jobs"]) for e in moved) == 6
    released = result.header.released_ms
    assert all(released <= e.at_ms < released + 1000 for e in moved)  # rechecked each second
    # without the release, everything stays held
    with read_recording(DATA / "mass_failure.qwcrec") as rec:
        never = rec.header.model_copy(update={"released_ms": 0})
        rec.header = never
        held = replay(rec, replay_settings(never.settings))
    assert {e.data["outcome"] for e in held.events if e.kind == "decided"} == {"held"}


def test_a_member_back_inside_sleep_gets_one_attempt_until_the_window_ends() -> None:
    result, _ = run("returns_in_sleep")
    flapper = member(5, 1)
    kinds = [
        (e.kind, e.data.get("by") or e.data.get("outcome"))
        for e in result.events
        if e.member == flapper and e.data.get("what") == "takeover"
    ]
    assert kinds == [
        ("proposed", "death"),
        ("decided", "cancelled"),
        ("not_proposed", None),
        ("proposed", "scan"),
        ("decided", "committed"),
    ]
    first, second = [
        e for e in result.events if e.kind == "proposed" and e.data["what"] == "takeover"
    ]
    cancel = next(e for e in result.events if e.data.get("outcome") == "cancelled")
    assert second.at_ms == cancel.at_ms + 4000  # sleep after the last attempt ended
    assert cancel.at_ms == first.data["due_at_ms"]


def test_the_recordings_stay_small() -> None:
    sizes = {p.name: p.stat().st_size for p in DATA.glob("*.qwcrec")}
    assert set(sizes) == {f"{n}.qwcrec" for n in SCENARIOS}
    assert all(size < 16_000 for size in sizes.values()), sizes
