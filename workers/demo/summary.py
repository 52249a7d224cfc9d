"""The demo's verdict and JSON summary, built from what it observed (pure: no I/O, no clock).

Expectations checked (each failure is named in the verdict, and makes ``ok`` false):

* every member turned active, and every job fired, before the kill;
* the killed member went ``active -> inactive -> dead``, each change once, and the others
  only ever became ``active``;
* exactly one takeover of the killed member was committed, moving every job it owned;
* no job is owned by a dead member at the end (``jobs_on_dead_members``);
* no ``(job, fire time)`` was fired twice (``double_fires``, from the store);
* the long-running job's execution on the killed member became ``incomplete`` and one
  recovery of the killed member retried it (attempt 2) on a live member, where it
  succeeded (``recovered``).

Missed fire times are reported (``missed_fires``, and apart the expected gap of the killed
member's jobs while it was dead, ``gap_fires_while_dead``) but do not decide ``ok``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.messages import MembershipChange, TakeoverProposal
from workers.demo.cluster import DemoTimings
from workers.demo.observe import Observation, spread_text
from workers.liveness.listing import iso_utc
from workers.store import MissedFires, RecoveryRow, TakeoverRow

__all__ = [
    "DemoRun",
    "build_summary",
    "committed_of",
    "excused_windows",
    "recovered_entries",
    "summary_lines",
    "takeover_entries",
]


@dataclass(frozen=True)
class DemoRun:
    """What the demo did and saw; times are epoch ms."""

    names: dict[str, str]  # member uuid -> name, in start order
    victim: str
    victim_jobs: tuple[str, ...]  # ids of the jobs the victim owned when it was killed
    jobs_total: int
    kill_ms: int | None  # None: never killed (the cluster did not get ready)
    ready: bool
    final: Observation  # read before the processes were stopped
    timings: DemoTimings
    elapsed_s: float
    long_run: str | None = None  # the long job's execution started on the victim


def committed_of(rows: Sequence[TakeoverRow], dead_uuid: str) -> list[TakeoverRow]:
    """The committed takeovers of ``dead_uuid``."""
    return [t for t in rows if t.dead_uuid == dead_uuid and t.outcome == "committed"]


def recoveries_of(rows: Sequence[RecoveryRow], dead_uuid: str) -> list[RecoveryRow]:
    """The committed recoveries of ``dead_uuid``."""
    return [r for r in rows if r.dead_uuid == dead_uuid and r.outcome == "committed"]


def recovered_entries(obs: Observation, dead_uuid: str) -> list[dict[str, Any]]:
    """``recovered``: each execution of ``dead_uuid`` a recovery retried, with where the
    retry ran and how it ended (when it is an execution of the long job the demo watched)."""
    out = []
    for rec in recoveries_of(obs.recoveries, dead_uuid):
        for r in rec.retries:
            retry = obs.long_run(r["retry_execution"])
            out.append(
                {
                    "execution": r["execution"],
                    "job": r["job"],
                    "from": r["from"],
                    "to": r["to"],
                    "retry_execution": r["retry_execution"],
                    "attempt": r["attempt"],
                    "retry_status": retry.status if retry else None,
                    "recovered_at": iso_utc(rec.decided_ms),
                }
            )
    return out


def excused_windows(
    job_ids: Collection[str], *, kill_ms: int, commit_ms: int, interval_s: float
) -> dict[str, tuple[int, int]]:
    """The expected gap of each of the killed member's jobs: from the kill until its new
    owner scheduled it, which a node does within one heartbeat interval of the commit."""
    until_ms = commit_ms + round(interval_s * 1000)
    return {job_id: (kill_ms, until_ms) for job_id in job_ids}


def takeover_entries(
    rows: Sequence[TakeoverRow], proposals: Sequence[TakeoverProposal]
) -> list[dict[str, Any]]:
    """The JSON objects of ``takeovers`` (ISO UTC times; seconds as floats)."""
    last_seen = {p.id: p.last_seen_ms for p in proposals}
    out = []
    for t in rows:
        committed_ms = t.decided_ms if t.outcome == "committed" else None
        seen_ms = last_seen.get(t.proposal_id)
        out.append(
            {
                "proposal_id": t.proposal_id,
                "dead_uuid": t.dead_uuid,
                "policy": t.policy,
                "outcome": t.outcome,
                "proposed_at": iso_utc(t.proposed_ms),
                "committed_at": iso_utc(committed_ms),
                "delay_s": _seconds(committed_ms, t.proposed_ms),
                "since_last_heartbeat_s": _seconds(committed_ms, seen_ms),
                "jobs_moved": t.jobs_moved,
                "destinations": dict(t.destinations),
                "detail": t.detail,
            }
        )
    return out


def _seconds(later_ms: int | None, earlier_ms: int | None) -> float | None:
    if later_ms is None or earlier_ms is None:
        return None
    return round((later_ms - earlier_ms) / 1000, 3)


def jobs_on_dead_members(obs: Observation) -> int:
    """Jobs owned (in the store) by members the view holds dead."""
    return sum(int(r["jobs_owned"]) for r in obs.rows if r["state"] == "dead")


def problems(run: DemoRun, double_fires: int) -> list[str]:
    """Every failed expectation of the module docstring, in words (empty: all held)."""
    if not run.ready or run.kill_ms is None:
        return ["the members did not all become active and fire every job before the kill"]
    found = _liveness_problems(run.final.changes, run.names, run.victim)
    committed = committed_of(run.final.takeovers, run.victim)
    victim = run.names[run.victim]
    if len(committed) != 1:
        found.append(f"{len(committed)} committed takeover(s) of {victim}, expected 1")
    elif committed[0].jobs_moved != len(run.victim_jobs):
        found.append(
            f"the takeover moved {committed[0].jobs_moved} job(s); {victim} owned "
            f"{len(run.victim_jobs)}"
        )
    if dead_owned := jobs_on_dead_members(run.final):
        found.append(f"{dead_owned} job(s) still owned by dead members")
    if double_fires:
        found.append(f"{double_fires} (job, fire time) pair(s) fired more than once")
    if run.long_run is not None:
        found += _recovery_problems(run, victim)
    return found


def _recovery_problems(run: DemoRun, victim: str) -> list[str]:
    obs = run.final
    first = obs.long_run(run.long_run)
    if first is None or first.status != "incomplete":
        status = first.status if first else "missing"
        return [f"the long-running execution on {victim} is {status}, expected incomplete"]
    recovered = [e for e in recovered_entries(obs, run.victim) if e["execution"] == first.id]
    if len(recovered) != 1:
        return [f"the long-running execution was retried {len(recovered)} time(s), expected 1"]
    entry = recovered[0]
    alive = {r["uuid"] for r in obs.rows if r["state"] == "active"}
    found = []
    if entry["to"] not in alive or entry["to"] == run.victim:
        found.append(f"the retry went to {entry['to']}, not an active member")
    if entry["retry_status"] != "succeeded":
        found.append(f"the retry is {entry['retry_status']}, expected succeeded")
    return found


def _liveness_problems(
    changes: Sequence[MembershipChange], names: Mapping[str, str], victim: str
) -> list[str]:
    found = []
    for member, name in names.items():
        seen = [c.to_state.value for c in changes if c.uuid == member]
        # A member the store knew before its node started (it owns jobs) is watched from
        # the view's start: on a slow start it turns inactive before its first heartbeat.
        # What counts is from its first turn to active on.
        if "active" in seen:
            seen = seen[seen.index("active") :]
        expected = ["active", "inactive", "dead"] if member == victim else ["active"]
        if seen != expected:
            found.append(f"{name} went {' -> '.join(seen) or 'nowhere'}, expected {expected}")
    return found


def build_summary(
    run: DemoRun, *, double_fires: int, missed: MissedFires, executions: int
) -> dict[str, Any]:
    """The JSON summary: ``ok``, ``verdict``, ``members``, ``killed``, ``takeovers``,
    ``jobs_on_dead_members``, ``double_fires``, ``missed_fires`` … (see README)."""
    found = problems(run, double_fires)
    obs = run.final
    return {
        "ok": not found,
        "verdict": "; ".join(found) if found else _good_verdict(run, missed),
        "members": [
            {k: r[k] for k in ("uuid", "name", "state", "jobs_owned")}
            for r in obs.rows
            if r["uuid"] in run.names
        ],
        "killed": run.victim,
        "killed_name": run.names[run.victim],
        "killed_at": iso_utc(run.kill_ms),
        "killed_jobs": len(run.victim_jobs),
        "jobs": run.jobs_total,
        "takeovers": takeover_entries(obs.takeovers, obs.proposals),
        "recovered": recovered_entries(obs, run.victim),
        "jobs_on_dead_members": jobs_on_dead_members(obs),
        "double_fires": double_fires,
        "executions": executions,
        "missed_fires": missed.missed,
        "missed_fires_total": missed.missed_total,
        "gap_fires_while_dead": missed.excused,
        "gap_fires_while_dead_total": missed.excused_total,
        "changes": [_change(c) for c in obs.changes],
        "timings_s": {
            "interval": run.timings.interval_s,
            "considerInactive": run.timings.inactive_s,
            "considerDead": run.timings.dead_s,
            "autotakeover.delay": run.timings.delay_s,
            "autotakeover.sleep": run.timings.sleep_s,
            "recoverExecutions.delay": run.timings.delay_s,
            "long_run": run.timings.long_run_s,
            "retry_delay": run.timings.retry_delay_s,
        },
        "elapsed_s": round(run.elapsed_s, 1),
    }


def _change(c: MembershipChange) -> dict[str, Any]:
    return {
        "uuid": c.uuid,
        "name": c.name,
        "from": c.from_state,
        "to": c.to_state,
        "at_ms": c.at_ms,
        "age_ms": c.at_ms - c.last_seen_ms,
    }


def _good_verdict(run: DemoRun, missed: MissedFires) -> str:
    t = committed_of(run.final.takeovers, run.victim)[0]
    retried = [
        f"its running execution retried on {run.names.get(e['to'], e['to'])}"
        for e in recovered_entries(run.final, run.victim)
        if e["execution"] == run.long_run
    ]
    return (
        f"{run.names[run.victim]} declared dead; its {t.jobs_moved} jobs taken over once "
        f"({spread_text(t.destinations, run.names)}); {''.join(r + '; ' for r in retried)}"
        f"none left on a dead member; no double fire; {missed.missed_total} missed fire(s)"
    )


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary for a terminal (rich markup), from :func:`build_summary`'s result."""
    names = {m["uuid"]: m["name"] for m in summary["members"]}
    killed = summary["killed_name"]
    lines = ["", "[bold]Summary[/]"]
    if summary["killed_at"] is not None:
        at = summary["killed_at"][11:23]
        lines.append(
            f"  killed                {killed}, owner of {summary['killed_jobs']} jobs, at {at} UTC"
        )
    for t in summary["takeovers"]:
        lines += _takeover_lines(t, names)
    for r in summary.get("recovered", []):
        to = names.get(r["to"], r["to"][:8])
        lines.append(
            f"  recovered             execution {r['execution'][:8]} retried on {to} "
            f"(attempt {r['attempt']}): {r['retry_status']}"
        )
    lines += [
        f"  jobs on dead members  {summary['jobs_on_dead_members']}",
        f"  double fires          {summary['double_fires']} in {summary['executions']} executions",
        f"  missed fires          {summary['missed_fires_total']} "
        f"({summary['gap_fires_while_dead_total']} expected while {killed} was dead)",
        f"  took                  {summary['elapsed_s']} s",
        "",
        f"{'[bold green]OK[/]' if summary['ok'] else '[bold red]FAILED[/]'}: {summary['verdict']}",
    ]
    return lines


def _takeover_lines(t: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    who = names.get(t["dead_uuid"], t["dead_uuid"][:8])
    head = f"  takeover of {who:<9} "
    if t["outcome"] != "committed":
        return [f"{head}{t['outcome']} ({t['detail']})"]
    heard = t["since_last_heartbeat_s"]
    pad = " " * len(head)
    lines = [f"{head}committed {t['delay_s']:.3f} s after the proposal,"]
    if heard is not None:
        lines.append(f"{pad}{heard:.3f} s after its last heartbeat,")
    lines.append(f"{pad}{t['jobs_moved']} jobs -> {spread_text(t['destinations'], names)}")
    return lines
