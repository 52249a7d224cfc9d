"""The replay's timeline: events, and how they are printed (text and JSON).

An event is what the workers would have done at a virtual time: a member's state change,
a proposal made (or not made: an attempt within ``sleep``), a decision on a proposal
(committed, cancelled, held, skipped, no_destination), or a remote command seen on a
member's stream. Printing is deterministic: the same events give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Event", "event_json", "event_line", "iso_ms", "member_label"]

_JOBS_SHOWN = 10


@dataclass(frozen=True)
class Event:
    """One line of the timeline. ``kind``: state, proposed, not_proposed, decided, command."""

    at_ms: int
    kind: str
    member: str
    name: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ``2024-05-01T03:12:00.250Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def member_label(uuid: str, name: str) -> str:
    """``name (1a2b3c4d)``, or the short uuid alone."""
    return f"{name} ({uuid[:8]})" if name else uuid[:8]


def event_json(e: Event) -> dict[str, Any]:
    """The event as a JSON object: at_ms, at, event, member, name, then its data."""
    return {
        "at_ms": e.at_ms,
        "at": iso_ms(e.at_ms),
        "event": e.kind,
        "member": e.member,
        "name": e.name,
        **e.data,
    }


def event_line(e: Event, names: Mapping[str, str]) -> str:
    """The event as one text line (two for a takeover's jobs)."""
    return f"{iso_ms(e.at_ms)}  {member_label(e.member, e.name):<28} {_what(e, names)}"


def _what(e: Event, names: Mapping[str, str]) -> str:
    d = e.data
    if e.kind == "state":
        since = (e.at_ms - d["last_seen_ms"]) / 1000 if d["last_seen_ms"] else None
        silent = f", silent {since:.3f} s" if d["reason"] == "silence" and since else ""
        return f"{d['from'] or '(none)'} -> {d['to']}  [{d['reason']}{silent}]"
    if e.kind == "proposed":
        return f"{d['what']} proposal {d['proposal'][:8]} due {iso_ms(d['due_at_ms'])}"
    if e.kind == "not_proposed":
        return f"{d['what']} not proposed: {d['reason']}"
    if e.kind == "command":
        target = d.get("job") or d.get("execution") or ""
        return f"command {d['action']} {target} ({d['command'][:8]})"
    return _decision(d, names)


def _decision(d: Mapping[str, Any], names: Mapping[str, str]) -> str:
    head = f"{d['what']} {d['proposal'][:8]} {d['outcome']}"
    if d["outcome"] != "committed":
        return f"{head}: {d['detail']}"
    if d["what"] == "takeover":
        spread = ", ".join(
            f"{member_label(u, names.get(u, ''))}: {n}" for u, n in d["destinations"].items()
        )
        jobs = [j["name"] or j["job"][:8] for j in d["jobs"]]
        more = f", … (+{len(jobs) - _JOBS_SHOWN})" if len(jobs) > _JOBS_SHOWN else ""
        listed = ", ".join(jobs[:_JOBS_SHOWN]) + more
        return f"{head}: {len(jobs)} job(s) -> {spread}\n{'':<54}jobs: {listed}"
    retries = "; ".join(
        f"{r['execution'][:8]} -> {member_label(r['to'], names.get(r['to'], ''))} "
        f"attempt {r['attempt']} at {iso_ms(r['not_before_ms'])}"
        for r in d["retries"]
    )
    return f"{head}: {len(d['marked'])} marked incomplete" + (
        f"; retries: {retries}" if retries else ""
    )
