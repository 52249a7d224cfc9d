"""What ``qwc replay`` prints: the timeline, a summary and the diff, as text or JSON.

Everything printed is a function of the recording and the settings: no wall-clock time,
no path, dictionaries in a fixed order. So the same file and settings give the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from workers.replay.engine import ReplayResult
from workers.replay.events import event_json, event_line, iso_ms
from workers.replay.settings import recorded_settings, replay_settings

__all__ = ["changed_settings", "report_json", "report_text", "summary"]


def changed_settings(result: ReplayResult) -> dict[str, dict[str, str | None]]:
    """Settings of the replay that differ from the recording's: key -> recorded, replayed."""
    before = recorded_settings(replay_settings(result.header.settings))
    after = recorded_settings(result.settings)
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return {k: {"recorded": before.get(k), "replayed": after.get(k)} for k in keys}


def summary(result: ReplayResult) -> dict[str, Any]:
    """Counts of the timeline: members, state changes by new state, decisions by outcome."""
    states = Counter(e.data["to"] for e in result.events if e.kind == "state")
    proposed = Counter(e.data["what"] for e in result.events if e.kind == "proposed")
    final: dict[str, tuple[str, str]] = {}
    for e in result.events:
        if e.kind == "decided":
            final[e.data["proposal"]] = (e.data["what"], e.data["outcome"])
    decided: dict[str, dict[str, int]] = {}
    for what, outcome in final.values():
        decided.setdefault(what, {})
        decided[what][outcome] = decided[what].get(outcome, 0) + 1
    return {
        "heartbeats": result.heartbeats,
        "bad_entries": result.bad_entries,
        "members": len({e.member for e in result.events if e.kind == "state"}),
        "state_changes": dict(sorted(states.items())),
        "proposed": dict(sorted(proposed.items())),
        "decided": {w: dict(sorted(o.items())) for w, o in sorted(decided.items())},
    }


def report_json(result: ReplayResult, diff: Mapping[str, Any] | None = None) -> str:
    h = result.header
    body: dict[str, Any] = {
        "recording": {
            "source": h.source,
            "prefix": h.prefix,
            "since_ms": h.since_ms,
            "until_ms": h.until_ms,
            "start_ms": h.start_ms,
            "view_started_ms": h.view_started_ms,
            "released_ms": h.released_ms,
        },
        "settings": recorded_settings(result.settings),
        "changed_settings": changed_settings(result),
        "events": [event_json(e) for e in result.events],
        "summary": summary(result),
    }
    if diff is not None:
        body["diff"] = diff
    return json.dumps(body, indent=2)


def report_text(result: ReplayResult, diff_text: list[str] | None = None) -> str:
    h = result.header
    lines = [
        f"replay of a {h.source} recording: {iso_ms(h.since_ms)} .. {iso_ms(h.until_ms)}"
        + (f" (warm-up from {iso_ms(h.start_ms)})" if h.start_ms < h.since_ms else "")
    ]
    for key, change in changed_settings(result).items():
        lines.append(f"what-if: {key} = {change['replayed']} (recorded {change['recorded']})")
    lines.extend(event_line(e, result.names) for e in result.events)
    s = summary(result)
    decided = "; ".join(
        f"{what}: " + ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items())
        for what, outcomes in s["decided"].items()
    )
    changes = ", ".join(f"{n} -> {state}" for state, n in s["state_changes"].items())
    lines.append(
        f"summary: {s['heartbeats']} heartbeat(s) replayed, {s['bad_entries']} bad; "
        f"{s['members']} member(s) changed state ({changes or 'none'})"
        + (f"; {decided}" if decided else "")
    )
    lines.extend(diff_text or [])
    return "\n".join(lines) + "\n"
