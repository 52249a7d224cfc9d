"""``qwc replay --diff``: the replayed decisions beside the recorded ones.

Recorded: the membership stream's changes, the takeover and recovery streams' proposals
and, for each proposal, its outcome in the store's audit rows (a policy skip has a row
and no proposal). Replayed: the timeline's events. Both are taken within the window.

They are compared per member, in order (``difflib.SequenceMatcher`` on what happened, so
one extra or missing change does not shift the rest): a membership change by (from, to,
and for a change to inactive or dead the last heartbeat), a proposal by (outcome, jobs or
executions, destinations). Matched items must also agree in time: the workers act at the
deadline or after it, never before, so a recorded time may be later than the replayed one
by at most ``tolerance_ms``, and never earlier — except a proposal the workers' periodic
scan made after an attempt window, up to ``early_ms`` (one heartbeat interval) earlier in a
recording of workers older than the shared lifecycle (their window ended when they last
refreshed its key; now it ends ``sleep`` after the decision, in the workers as here).
A change to active is not compared by its heartbeat: the worker records the newest
heartbeat of the batch it read, the replay the one that made the member active.
Whatever is left is a difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from schemas.codec import decode_many
from schemas.messages import MembershipChange, RecoveryProposal, TakeoverProposal
from workers.replay.events import Event, iso_ms, member_label
from workers.replay.fileformat import Recording
from workers.replay.records import AuditRecord

__all__ = ["DEFAULT_TOLERANCE_MS", "Item", "diff", "diff_lines"]

DEFAULT_TOLERANCE_MS = 1_000


@dataclass(frozen=True)
class Item:
    """One thing that happened to a member: ``key`` is compared, ``at_ms`` within tolerance."""

    stream: str  # membership, takeover, recovery
    member: str
    at_ms: int
    key: tuple[Any, ...]
    show: str
    early_ok: bool = False  # the recorded one may be early (a proposal by the scan)


def diff(
    rec: Recording,
    events: Sequence[Event],
    *,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
    early_ms: int = 0,
) -> dict[str, Any]:
    """``{"tolerance_ms", "early_ms", "matched": {stream: n}, "differences": [...]}``."""
    recorded = _recorded(rec)
    replayed = _replayed(events)
    matched: dict[str, int] = {"membership": 0, "takeover": 0, "recovery": 0}
    out: list[dict[str, Any]] = []
    for group in sorted(set(recorded) | set(replayed)):
        a, b = recorded.get(group, []), replayed.get(group, [])
        ops = SequenceMatcher(None, [i.key for i in a], [i.key for i in b], autojunk=False)
        for tag, i1, i2, j1, j2 in ops.get_opcodes():
            if tag == "equal":
                for x, y in zip(a[i1:i2], b[j1:j2], strict=True):
                    delta = x.at_ms - y.at_ms
                    if (-early_ms if y.early_ok else 0) <= delta <= tolerance_ms:
                        matched[group[0]] += 1
                    else:
                        out.append(_difference("time", x, y))
                continue
            out.extend(_difference("only recorded", x, None) for x in a[i1:i2])
            out.extend(_difference("only replayed", None, y) for y in b[j1:j2])
    out.sort(key=lambda d: (d["at_ms"], d["stream"], d["member"], d["what"]))
    return {
        "tolerance_ms": tolerance_ms,
        "early_ms": early_ms,
        "matched": matched,
        "differences": out,
    }


def diff_lines(result: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """The diff as text lines."""
    m = result["matched"]
    lines = [
        f"diff against the recording (recorded at most {result['tolerance_ms']} ms after the "
        f"replay; a proposal of the periodic scan up to {result['early_ms']} ms before): "
        f"{m['membership']} membership change(s), {m['takeover']} takeover(s), "
        f"{m['recovery']} recovery(ies) match"
    ]
    for d in result["differences"]:
        who = member_label(d["member"], names.get(d["member"], ""))
        if d["what"] == "time":
            lines.append(
                f"  {d['stream']:<10} {who:<28} {d['recorded']['show']}: recorded at "
                f"{iso_ms(d['recorded']['at_ms'])}, replayed at {iso_ms(d['replayed']['at_ms'])} "
                f"({d['delta_ms']:+d} ms)"
            )
        else:
            side = d["recorded"] or d["replayed"]
            lines.append(
                f"  {d['stream']:<10} {who:<28} {side['show']} at {iso_ms(side['at_ms'])}: "
                f"{d['what']}"
            )
    if not result["differences"]:
        lines.append("  no differences")
    return lines


def _difference(what: str, x: Item | None, y: Item | None) -> dict[str, Any]:
    first = x or y
    assert first is not None
    return {
        "what": what,
        "stream": first.stream,
        "member": first.member,
        "at_ms": first.at_ms,
        "recorded": None if x is None else {"at_ms": x.at_ms, "show": x.show},
        "replayed": None if y is None else {"at_ms": y.at_ms, "show": y.show},
        "delta_ms": None if x is None or y is None else x.at_ms - y.at_ms,
    }


Groups = dict[tuple[str, str], list[Item]]


def _group(items: Iterable[Item]) -> Groups:
    out: Groups = {}
    for item in sorted(items, key=lambda i: i.at_ms):
        out.setdefault((item.stream, item.member), []).append(item)
    return out


def _in_window(rec: Recording) -> Callable[[int], bool]:
    h = rec.header
    return lambda ms: h.since_ms <= ms <= h.until_ms


def _recorded(rec: Recording) -> Groups:
    inside = _in_window(rec)
    items: list[Item] = []
    for msg in _messages(rec, "membership"):
        if isinstance(msg, MembershipChange) and inside(msg.at_ms):
            f = msg.from_state.value if msg.from_state else None
            items.append(_change(msg.uuid, msg.at_ms, f, msg.to_state.value, msg.last_seen_ms))
    for what, audit in (
        ("takeover", rec.snapshot.takeovers),
        ("recovery", rec.snapshot.recoveries),
    ):
        rows = {a.proposal_id: a for a in audit}
        kind = TakeoverProposal if what == "takeover" else RecoveryProposal
        proposed = [m for m in _messages(rec, what) if isinstance(m, kind)]
        for p in proposed:
            if inside(p.proposed_at_ms):
                items.append(_proposal_item(what, p.dead_uuid, p.proposed_at_ms, rows.get(p.id)))
        known = {p.id for p in proposed}
        for a in audit:
            if a.proposal_id not in known and a.outcome == "skipped" and inside(a.proposed_ms):
                items.append(_proposal_item(what, a.dead_uuid, a.proposed_ms, a))
    return _group(items)


def _messages(rec: Recording, stream: str) -> list[object]:
    return [m for b in rec.streams.get(stream, []) for m in decode_many(b.raw)]


def _change(member: str, at_ms: int, f: str | None, t: str, last_seen_ms: int) -> Item:
    show = f"{f or '(none)'} -> {t}"
    seen = None if t == "active" else last_seen_ms
    return Item("membership", member, at_ms, (f, t, seen), show)


def _proposal_item(what: str, member: str, at_ms: int, row: AuditRecord | None) -> Item:
    outcome = (row.outcome if row else None) or "pending"
    count = row.count if row and outcome == "committed" else 0
    spread = tuple(sorted(row.destinations.items())) if row and outcome == "committed" else ()
    return Item(what, member, at_ms, (outcome, count, spread), _show(what, outcome, count, spread))


def _show(what: str, outcome: str, count: int, spread: tuple[tuple[str, int], ...]) -> str:
    if outcome != "committed":
        return f"{what} {outcome}"
    unit = "job(s)" if what == "takeover" else "execution(s)"
    to = ", ".join(f"{u[:8]}: {n}" for u, n in spread)
    return f"{what} committed: {count} {unit}" + (f" -> {to}" if to else "")


def _replayed(events: Sequence[Event]) -> Groups:
    items: list[Item] = []
    final: dict[str, Event] = {}
    for e in events:
        if e.kind == "decided":
            final[e.data["proposal"]] = e
    for e in events:
        d = e.data
        if e.kind == "state":
            items.append(_change(e.member, e.at_ms, d["from"], d["to"], d["last_seen_ms"]))
        elif e.kind == "proposed" or (e.kind == "decided" and d["proposal"].startswith("skip-")):
            items.append(_replayed_proposal(e, final.get(d["proposal"])))
    return _group(items)


def _replayed_proposal(proposed: Event, decided: Event | None) -> Item:
    what = proposed.data["what"]
    outcome = decided.data["outcome"] if decided else "pending"
    count, spread = 0, ()
    if decided is not None and outcome == "committed":
        d = decided.data
        count = len(d["jobs"]) if what == "takeover" else len(d["marked"])
        spread = tuple(sorted(d["destinations"].items()))
    key = (outcome, count, spread)
    show = _show(what, outcome, count, spread)
    scan = proposed.data.get("by") == "scan"
    return Item(what, proposed.member, proposed.at_ms, key, show, early_ok=scan)
