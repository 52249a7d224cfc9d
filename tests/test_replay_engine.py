"""The replay on synthetic traces: liveness transitions at their exact deadlines, proposals,
cancellations, takeovers and recoveries as the workers decide them, on a virtual clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.codec import encode
from schemas.messages import Heartbeat, MemberState
from workers.replay.engine import ReplayResult, replay
from workers.replay.events import Event
from workers.replay.fileformat import RecordingWriter, read_recording
from workers.replay.ownership import Ownership, assign_jobs
from workers.replay.proposals import proposal_id
from workers.replay.records import JobRecord, PriorState, RecordingHeader, Snapshot
from workers.replay.report import report_json, report_text
from workers.replay.settings import replay_settings
from workers.replay.synthetic import (
    Silence,
    TraceSpec,
    member_uuid,
    random_silences,
    write_trace,
)

CM = "qwcontrol.clusterMode."
FAST = {
    CM + "heartbeat.considerInactive": "0.6",
    CM + "heartbeat.considerDead": "1.2",
    CM + "heartbeat.delay": "0",
    CM + "autotakeover.enabled": "true",
    CM + "autotakeover.delay": "0.5",
    CM + "autotakeover.sleep": "4",
    CM + "recoverExecutions.enabled": "true",
    CM + "recoverExecutions.delay": "0.5",
    CM + "recoverExecutions.sleep": "4",
}
T0 = 1_700_000_000_000
M0, M1, M2 = (member_uuid(0, i) for i in range(3))


def trace(tmp_path: Path, *silences: Silence, **spec: Any) -> Path:
    """3 members heartbeating every 0.2 s for 12 s, 2 jobs and 1 running execution each."""
    settings = {**FAST, **spec.pop("settings", {})}
    fields: dict[str, Any] = {
        "members": 3,
        "interval_s": 0.2,
        "duration_s": 12,
        "jobs_per_member": 2,
        "running_per_member": 1,
        "retry_count": 1,
        **spec,
    }
    path = tmp_path / "t.qwcrec"
    write_trace(path, TraceSpec(silences=silences, settings=settings, **fields))
    return path


def run(path: Path, *sets: str, exhaustive: bool = False) -> ReplayResult:
    with read_recording(path) as rec:
        return replay(rec, replay_settings(rec.header.settings, sets=sets), exhaustive=exhaustive)


def changes(result: ReplayResult, member: str) -> list[tuple[int, str | None, str]]:
    """(ms after the start, from, to) of a member's state changes."""
    return [
        (e.at_ms - T0, e.data["from"], e.data["to"])
        for e in result.events
        if e.kind == "state" and e.member == member
    ]


def decisions(result: ReplayResult, member: str) -> list[tuple[int, str, str, str]]:
    """(ms after the start, kind, what, outcome or due) of a member's proposals."""
    out = []
    for e in result.events:
        if e.member != member or e.kind not in ("proposed", "not_proposed", "decided"):
            continue
        detail = e.data.get("outcome") or (e.kind if e.kind != "proposed" else e.data["by"])
        out.append((e.at_ms - T0, e.kind, e.data["what"], detail))
    return out


def test_a_killed_member_turns_inactive_and_dead_at_its_exact_deadlines(tmp_path: Path) -> None:
    result = run(trace(tmp_path, Silence(0, 3.0)))  # last heartbeat at 2.8 s
    assert changes(result, M0) == [
        (0, None, "active"),
        (3400, "active", "inactive"),
        (4000, "inactive", "dead"),
    ]
    assert [c[2] for c in changes(result, M1)] == ["active"]
    assert decisions(result, M0) == [
        (4000, "proposed", "takeover", "death"),
        (4000, "proposed", "recovery", "death"),
        (4500, "decided", "takeover", "committed"),
        (4500, "decided", "recovery", "committed"),
    ]
    take, recover = [e for e in result.events if e.kind == "decided"]
    assert take.data["destinations"] == {M1: 1, M2: 1}  # both own 2 jobs: one each
    jobs = take.data["jobs"]  # by job id, to the destinations in uuid order
    assert sorted(j["name"] for j in jobs) == ["job-1-1", "job-1-2"]
    assert [j["job"] for j in jobs] == sorted(j["job"] for j in jobs)
    assert [j["to"] for j in jobs] == sorted([M1, M2])
    (retry,) = recover.data["retries"]
    assert recover.data["marked"] == [retry["execution"]]
    assert retry["attempt"] == 2 and retry["to"] == min(M1, M2)  # both run 1: by uuid
    assert retry["not_before_ms"] == T0 + 4500  # the job's retry delay is 0
    dead = next(e for e in result.events if e.kind == "state" and e.data["to"] == "dead")
    assert dead.data["last_seen_ms"] == T0 + 2800 and dead.data["reason"] == "silence"


def test_a_view_restart_gives_silent_members_a_new_considerDead(tmp_path: Path) -> None:
    """A Redis failover restarts the live view's grace (a ViewRestart on view:restarts):
    the replay too turns a member silent across it dead considerDead after the restart,
    not after its last heartbeat."""
    result = run(trace(tmp_path, Silence(0, 3.0), view_restarts_s=(3.6,)))  # last at 2.8 s
    assert changes(result, M0) == [
        (0, None, "active"),
        (3400, "active", "inactive"),
        (4800, "inactive", "dead"),  # 3.6 s + considerDead 1.2 s; 4000 without the restart
    ]
    assert [c[2] for c in changes(result, M1)] == ["active"]


def test_a_gap_shorter_than_considerInactive_changes_nothing(tmp_path: Path) -> None:
    result = run(trace(tmp_path, Silence(0, 3.0, 3.2)))  # beats at 2.8 and 3.2
    assert changes(result, M0) == [(0, None, "active")]


def test_a_member_inactive_for_a_while_comes_back_without_a_proposal(tmp_path: Path) -> None:
    result = run(trace(tmp_path, Silence(0, 3.0, 3.7)))
    assert changes(result, M0) == [
        (0, None, "active"),
        (3400, "active", "inactive"),
        (3800, "inactive", "active"),
    ]
    assert decisions(result, M0) == []


def test_a_dead_member_back_before_the_delay_has_its_proposals_cancelled(tmp_path: Path) -> None:
    result = run(trace(tmp_path, Silence(0, 3.0, 4.3)))
    assert changes(result, M0)[-2:] == [(4000, "inactive", "dead"), (4400, "dead", "active")]
    assert decisions(result, M0)[2:] == [
        (4500, "decided", "takeover", "cancelled"),
        (4500, "decided", "recovery", "cancelled"),
    ]
    cancelled = [e for e in result.events if e.data.get("outcome") == "cancelled"]
    assert {e.data["detail"] for e in cancelled} == {"member is active again"}


def test_a_second_death_inside_sleep_is_proposed_only_when_the_window_ends(
    tmp_path: Path,
) -> None:
    result = run(trace(tmp_path, Silence(0, 3.0, 4.3), Silence(0, 5.0)))
    # first death 4.0 s, cancelled at 4.5 s: the window ends at 4.5 + sleep 4 = 8.5 s;
    # second death at 6.0 s (last beat 4.8 s): no proposal; at 8.5 s the scan proposes
    assert decisions(result, M0) == [
        (4000, "proposed", "takeover", "death"),
        (4000, "proposed", "recovery", "death"),
        (4500, "decided", "takeover", "cancelled"),
        (4500, "decided", "recovery", "cancelled"),
        (6000, "not_proposed", "takeover", "not_proposed"),
        (6000, "not_proposed", "recovery", "not_proposed"),
        (8500, "proposed", "takeover", "scan"),
        (8500, "proposed", "recovery", "scan"),
        (9000, "decided", "takeover", "committed"),
        (9000, "decided", "recovery", "committed"),
    ]


def test_a_member_outside_the_static_policy_gets_a_recorded_skip(tmp_path: Path) -> None:
    static = {CM + "autotakeover.policy": "static", CM + "autotakeover.config.allowed": M1}
    result = run(trace(tmp_path, Silence(0, 3.0), settings=static))
    (skip,) = [e for e in result.events if e.kind == "decided" and e.data["what"] == "takeover"]
    assert skip.data["proposal"] == f"skip-{M0}-{T0 + 4000}"
    assert (
        skip.data["outcome"] == "skipped"
        and "not in autotakeover.config.allowed" in (skip.data["detail"])
    )
    assert (4500, "decided", "recovery", "committed") in decisions(result, M0)


def test_without_autotakeover_nothing_is_proposed_or_skipped(tmp_path: Path) -> None:
    off = {CM + "autotakeover.enabled": "false", CM + "recoverExecutions.enabled": "false"}
    result = run(trace(tmp_path, Silence(0, 3.0), settings=off))
    assert changes(result, M0)[-1] == (4000, "inactive", "dead")
    assert decisions(result, M0) == []


@pytest.mark.parametrize(("released_s", "final"), [(None, "held"), (6.0, "committed")])
def test_a_mass_failure_is_held_until_the_recorded_release(
    tmp_path: Path, released_s: float | None, final: str
) -> None:
    path = trace(tmp_path, Silence(0, 3.0), Silence(1, 3.0), released_s=released_s)
    result = run(path)
    taken = [d for d in decisions(result, M0) if d[2] == "takeover"]
    assert taken[:2] == [
        (4000, "proposed", "takeover", "death"),
        (4500, "decided", "takeover", "held"),
    ]
    held = next(e for e in result.events if e.data.get("outcome") == "held")
    assert held.data["detail"].startswith("mass failure: 2 of 3 members went silent")
    if final == "committed":  # rechecked every second: 5.5 s still held, 6.5 s released
        assert taken[2:] == [(6500, "decided", "takeover", "committed")]
    else:
        assert taken[2:] == []


def test_random_destinations_are_seeded_by_the_derived_proposal_id(tmp_path: Path) -> None:
    random = {
        CM + "autotakeover.policy": "remoteexecution",
        CM + "remoteExecution.policy": "random",
    }
    path = trace(tmp_path, Silence(0, 3.0), members=6, jobs_per_member=20, settings=random)
    first, second = run(path), run(path)
    take = [e for e in first.events if e.kind == "decided" and e.data["what"] == "takeover"]
    assert take == [
        e for e in second.events if e.kind == "decided" and e.data["what"] == "takeover"
    ]
    assert take[0].data["proposal"] == proposal_id("takeover", M0, T0 + 4000)
    assert sum(take[0].data["destinations"].values()) == 20
    assert len(take[0].data["destinations"]) > 1


def test_the_fast_path_decides_exactly_as_every_heartbeat_decided(tmp_path: Path) -> None:
    silences = random_silences(
        20, 600, seed=7, gaps=40, gap_s=(0.1, 3.0), deaths=4, returns=2, return_after_s=(1, 20)
    )
    path = trace(tmp_path, *silences, members=20, duration_s=600)
    fast, exhaustive = run(path), run(path, exhaustive=True)
    assert fast.events == exhaustive.events
    kinds = {e.data.get("to") or e.data.get("outcome") for e in fast.events}
    assert {"inactive", "dead", "active", "committed", "cancelled"} <= kinds


def test_a_larger_considerDead_removes_the_takeover_of_a_shorter_pause(tmp_path: Path) -> None:
    path = trace(tmp_path, Silence(0, 3.0, 4.8))  # silent 2 s (last beat 2.8 s, back 4.8 s)
    recorded = run(path)
    assert (4500, "decided", "takeover", "committed") in decisions(recorded, M0)
    what_if = run(path, f"{CM}heartbeat.considerDead=3")
    assert changes(what_if, M0) == [
        (0, None, "active"),
        (3400, "active", "inactive"),
        (4800, "inactive", "active"),
    ]
    assert decisions(what_if, M0) == []


def test_the_same_recording_and_settings_print_the_same_bytes(tmp_path: Path) -> None:
    silences = random_silences(
        10, 120, seed=3, gaps=10, gap_s=(0.5, 3), deaths=2, returns=1, return_after_s=(2, 10)
    )
    path = trace(tmp_path, *silences, members=10, duration_s=120)
    a, b = run(path), run(path)
    assert report_text(a) == report_text(b) and report_json(a) == report_json(b)
    assert report_text(a) != report_text(run(path, f"{CM}heartbeat.considerDead=2"))


def test_a_synthetic_payload_is_what_the_codec_encodes(tmp_path: Path) -> None:
    path = trace(tmp_path)
    with read_recording(path) as rec:
        block = next(rec.heartbeat_blocks())
    hb = Heartbeat(
        uuid=M1,
        name="node-2",
        seq=0,
        started_at_ms=T0,
        sent_at_ms=block.ms[1],
        running=(_running(path, M1),),
    )
    assert block.raw[1] == encode(hb)


def _running(path: Path, member: str) -> str:
    with read_recording(path) as rec:
        return next(e.id for e in rec.snapshot.executions if e.member_uuid == member)


# -- recordings that start with a warm-up, prior states and members never heard --------


def beat(uuid: str, name: str, ms: int) -> bytes:
    return encode(Heartbeat(uuid=uuid, name=name, seq=0, started_at_ms=0, sent_at_ms=ms))


def handmade(path: Path, snapshot: Snapshot, beats: list[tuple[int, str]], **header: Any) -> Path:
    fields: dict[str, Any] = {
        "created_ms": T0 + 20_000,
        "source": "redis",
        "prefix": "qwc",
        "since_ms": T0,
        "until_ms": T0 + 10_000,
        "start_ms": T0,
        "view_started_ms": T0,
        "settings": {**FAST, CM + "heartbeat.interval": "0.2"},
        **header,
    }
    with RecordingWriter(path) as w:
        w.header(RecordingHeader(**fields))
        w.snapshot(snapshot)
        if beats:
            w.block(
                "heartbeats",
                [ms for ms, _ in beats],
                [0] * len(beats),
                [beat(u, "n", ms) for ms, u in beats],
            )
    return path


def test_nobody_is_dead_before_considerDead_after_the_view_started(tmp_path: Path) -> None:
    # M0: known to the store, never heard; M1: last heard 10 s before the view started
    prior = [
        PriorState(
            uuid=M1,
            name="old",
            state=MemberState.ACTIVE,
            last_seen_ms=T0 - 10_000,
            at_ms=T0 - 20_000,
        )
    ]
    path = handmade(tmp_path / "h.qwcrec", Snapshot(prior=prior, unheard={M0: 0}), [])
    result = run(path)
    assert changes(result, M0) == [(600, None, "inactive"), (1200, "inactive", "dead")]
    assert changes(result, M1) == [(0, "active", "inactive"), (1200, "inactive", "dead")]


def test_the_warm_up_is_replayed_but_not_shown(tmp_path: Path) -> None:
    # the window opens at T0 + 5 s; M0 heartbeats from the warm-up on, M1 died before
    prior = [PriorState(uuid=M1, state=MemberState.DEAD, last_seen_ms=T0 - 9_000, at_ms=T0)]
    beats = [(T0 + ms, M0) for ms in range(0, 10_000, 200)]
    older = T0 - 30_000  # the view began before M1 died
    snap = Snapshot(prior=prior)
    path = handmade(tmp_path / "w.qwcrec", snap, beats, since_ms=T0 + 5_000, view_started_ms=older)
    result = run(path)
    assert result.events == [] and result.heartbeats == 50
    shown = run(handmade(tmp_path / "w2.qwcrec", snap, beats, view_started_ms=older))
    assert [e.data["to"] for e in shown.events] == ["active"]


def test_jobs_taken_over_in_the_window_start_with_their_previous_owner() -> None:
    jobs = [
        JobRecord(id="a", owner_uuid=M1, modified_by=M0, modified_ms=T0 + 5, created_ms=1),
        JobRecord(id="b", owner_uuid=M1, modified_by=M0, modified_ms=T0 - 5, created_ms=1),
        JobRecord(id="c", owner_uuid=M0, modified_by=M0, modified_ms=T0 + 5, created_ms=T0 + 9),
    ]
    own = Ownership(jobs, T0)
    assert own.owner == {"a": M0, "b": M1, "c": M0}
    assert own.owned(M0, T0) == ["a"] and own.owned(M0, T0 + 9) == ["a", "c"]
    assert own.counts(T0 + 9) == {M0: 2, M1: 1}
    assert own.move(M0, [(M2, 1), (M1, 1)], T0 + 9) == [("a", M2), ("c", M1)]
    assert own.counts(T0 + 9) == {M1: 2, M2: 1}
    assert assign_jobs(["x", "y", "z"], [(M1, 1), (M2, 1)]) == [("x", M1), ("y", M2), ("z", M2)]


def test_an_event_prints_as_one_line_with_its_member() -> None:
    from workers.replay.events import event_line

    e = Event(
        T0,
        "state",
        M0,
        "n1",
        {"from": "active", "to": "inactive", "last_seen_ms": T0 - 600, "reason": "silence"},
    )
    assert event_line(e, {}) == (
        f"2023-11-14T22:13:20.000Z  n1 ({M0[:8]})                active -> inactive  "
        "[silence, silent 0.600 s]"
    )
