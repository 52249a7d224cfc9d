"""The demo's pure pieces: timings, victim choice, excused windows, the verdict."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from schemas.messages import MembershipChange, MemberState, TakeoverProposal
from schemas.settings import load_settings
from workers.demo.cluster import DemoTimings, choose_victim
from workers.demo.observe import Note, Observation, event_lines
from workers.demo.summary import DemoRun, build_summary, excused_windows, problems
from workers.store import ExecutionRow, MissedFires, RecoveryRow, TakeoverRow

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"
NAMES = {A: "node-1", B: "node-2", C: "node-3"}


def test_timings_follow_the_interval_and_load_as_valid_settings(tmp_path: Any) -> None:
    timings = DemoTimings.from_interval(0.25)
    assert (timings.inactive_s, timings.dead_s, timings.delay_s, timings.sleep_s) == (
        1.0,
        2.0,
        1.0,
        10.0,
    )
    config = tmp_path / "qwcontrol-config.properties"
    config.write_text(timings.properties())
    from_file = load_settings(config, environ={})
    from_env = load_settings(None, environ={**timings.env(), "QWC_HOME": str(tmp_path)})
    for settings in (from_file, from_env):
        assert settings.heartbeat_consider_dead_s == 2.0
        assert settings.autotakeover_enabled is True
        assert settings.autotakeover_delay_s == 1.0
        assert settings.autotakeover_sleep_s == 10.0


def test_the_victim_owns_the_most_jobs_the_last_on_a_tie() -> None:
    assert choose_victim({"j1": A, "j2": B, "j3": C}, [A, B, C]) == C
    assert choose_victim({"j1": A, "j2": B, "j3": A}, [A, B, C]) == A


def test_excused_windows_run_from_the_kill_to_one_interval_after_the_commit() -> None:
    windows = excused_windows(["j1", "j2"], kill_ms=10_500, commit_ms=13_400, interval_s=0.25)
    assert windows == {"j1": (10_500, 13_650), "j2": (10_500, 13_650)}


def _change(uuid: str, old: MemberState | None, new: MemberState, at_ms: int) -> MembershipChange:
    return MembershipChange(
        uuid=uuid, name=NAMES[uuid], from_state=old, to_state=new, at_ms=at_ms, last_seen_ms=0
    )


def _takeover(jobs_moved: int, outcome: str = "committed") -> TakeoverRow:
    return TakeoverRow(
        id=1,
        proposal_id="p1",
        dead_uuid=C,
        policy="any",
        proposed_ms=12_000,
        due_ms=13_000,
        decided_ms=13_004,
        outcome=outcome,
        jobs_moved=jobs_moved,
        destinations={A: 1, B: 1},
        detail="",
    )


def _run(*, takeovers: list[TakeoverRow], c_owns: int = 0) -> DemoRun:
    active, inactive, dead = MemberState.ACTIVE, MemberState.INACTIVE, MemberState.DEAD
    changes = [_change(u, None, active, 1_000) for u in (A, B, C)]
    changes += [_change(C, active, inactive, 11_000), _change(C, inactive, dead, 12_000)]
    rows = [
        {"uuid": A, "name": "node-1", "state": "active", "jobs_owned": 2},
        {"uuid": B, "name": "node-2", "state": "active", "jobs_owned": 2},
        {"uuid": C, "name": "node-3", "state": "dead", "jobs_owned": c_owns},
    ]
    proposal = TakeoverProposal(
        id="p1",
        dead_uuid=C,
        policy="any",
        proposed_at_ms=12_000,
        due_at_ms=13_000,
        last_seen_ms=10_000,
    )
    final = Observation(rows, changes, [proposal], takeovers, {A: 9, B: 9, C: 2}, 6, 0)
    return DemoRun(
        names=NAMES,
        victim=C,
        victim_jobs=("j5", "j6"),
        jobs_total=6,
        kill_ms=10_500,
        ready=True,
        final=final,
        timings=DemoTimings.from_interval(0.25),
        elapsed_s=9.0,
    )


def test_a_clean_run_is_ok_and_summarised() -> None:
    summary = build_summary(
        _run(takeovers=[_takeover(2)]),
        double_fires=0,
        missed=MissedFires(excused={"j5": 3, "j6": 3}),
        executions=40,
    )
    assert summary["ok"] is True, summary["verdict"]
    assert summary["killed"] == C and summary["killed_jobs"] == 2
    [takeover] = summary["takeovers"]
    assert takeover["delay_s"] == 1.004 and takeover["since_last_heartbeat_s"] == 3.004
    assert takeover["committed_at"] == "1970-01-01T00:00:13.004+00:00"
    assert summary["gap_fires_while_dead_total"] == 6 and summary["missed_fires_total"] == 0


def test_each_broken_expectation_is_named() -> None:
    assert problems(_run(takeovers=[]), 0) == ["0 committed takeover(s) of node-3, expected 1"]
    assert problems(_run(takeovers=[_takeover(1)]), 0) == [
        "the takeover moved 1 job(s); node-3 owned 2"
    ]
    assert problems(_run(takeovers=[_takeover(2)], c_owns=1), 3) == [
        "1 job(s) still owned by dead members",
        "3 (job, fire time) pair(s) fired more than once",
    ]
    run = _run(takeovers=[_takeover(2)])
    skipped = [c for c in run.final.changes if c.to_state is not MemberState.INACTIVE]
    run = replace(run, final=replace(run.final, changes=skipped))
    assert problems(run, 0) == [
        "node-3 went active -> dead, expected ['active', 'inactive', 'dead']"
    ]
    assert problems(replace(run, ready=False, kill_ms=None), 0) == [
        "the members did not all become active and fire every job before the kill"
    ]


def test_a_member_watched_before_its_first_heartbeat_counts_from_its_first_active() -> None:
    """On a slow start the view turns a member the store knew inactive before its first
    heartbeat; the run is still ok. A member that never turned active is still named."""
    run = _run(takeovers=[_takeover(2)])
    early = [_change(u, None, MemberState.INACTIVE, 500) for u in (A, C)]
    early_then = [
        _change(c.uuid, MemberState.INACTIVE, c.to_state, c.at_ms)
        if c.uuid in (A, C) and c.at_ms == 1_000
        else c
        for c in run.final.changes
    ]
    flapped = replace(run, final=replace(run.final, changes=early + early_then))
    assert problems(flapped, 0) == []
    never = [c for c in flapped.final.changes if not (c.uuid == A and c.at_ms == 1_000)]
    assert problems(replace(run, final=replace(run.final, changes=never)), 0) == [
        "node-1 went inactive, expected ['active']"
    ]


def test_event_lines_are_in_time_order_relative_to_the_start() -> None:
    lines = event_lines(
        _run(takeovers=[_takeover(2)]).final, [Note(10_500, "SIGKILL node-3")], NAMES, start_ms=0
    )
    assert lines[3] == " +10.500 s  SIGKILL node-3"
    assert (
        lines[-1]
        == " +13.004 s  node-3: takeover COMMITTED (+1.004 s), 2 jobs -> node-1 1, node-2 1"
    )


def _long(execution_id: str, member: str, status: str, attempt: int) -> ExecutionRow:
    return ExecutionRow(
        id=execution_id,
        job_id="long",
        member_uuid=member,
        status=status,
        attempt=attempt,
        retry_of=None if attempt == 1 else "e1",
        trigger="manual" if attempt == 1 else "retry",
        fire_ms=11_000,
        owner_epoch=None,
        created_ms=11_000,
        started_ms=11_100,
        ended_ms=14_000,
        exit_code=None,
        output=None,
        reason=None,
        rq_job_id=None,
        queued_ms=11_050,
    )


def _recovered_run(retry_status: str, to: str = A) -> DemoRun:
    run = _run(takeovers=[_takeover(2)])
    recovery = RecoveryRow(
        id=1,
        proposal_id="r1",
        dead_uuid=C,
        policy="any",
        proposed_ms=12_000,
        due_ms=13_000,
        decided_ms=13_010,
        outcome="committed",
        executions_marked=1,
        retries=(
            {
                "execution": "e1",
                "job": "long",
                "from": C,
                "to": to,
                "attempt": 2,
                "retry_execution": "e2",
                "not_before_ms": 13_510,
            },
        ),
        detail="",
    )
    runs = [_long("e1", C, "incomplete", 1), _long("e2", to, retry_status, 2)]
    final = replace(run.final, recoveries=[recovery], long_runs=runs)
    return replace(run, final=final, long_run="e1")


def test_the_recovered_execution_is_summarised_and_checked() -> None:
    run = _recovered_run("succeeded")
    assert problems(run, 0) == []
    summary = build_summary(run, double_fires=0, missed=MissedFires(), executions=40)
    (entry,) = summary["recovered"]
    assert (entry["from"], entry["to"], entry["retry_status"]) == (C, A, "succeeded")
    assert "its running execution retried on node-1" in summary["verdict"]
    assert problems(_recovered_run("failed"), 0) == ["the retry is failed, expected succeeded"]
    assert problems(_recovered_run("succeeded", to=C), 0) == [
        f"the retry went to {C}, not an active member"
    ]
    no_recovery = replace(run, final=replace(run.final, recoveries=[]))
    assert problems(no_recovery, 0) == [
        "the long-running execution was retried 0 time(s), expected 1"
    ]
