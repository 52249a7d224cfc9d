"""One reading of the demo cluster (Redis view and streams, SQL store), and its event lines.

:func:`observe` does the I/O; :func:`event_lines` turns an :class:`Observation` plus the
demo's own notes into the lines shown under the table (pure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from schemas.codec import decode_as
from schemas.errors import DecodeError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import MembershipChange, RecoveryProposal, TakeoverProposal
from workers.liveness import view
from workers.liveness.listing import member_rows
from workers.store import (
    ExecutionRow,
    RecoveryRow,
    Store,
    TakeoverRow,
    count_double_fires,
    count_executions_by_member,
    count_jobs_by_owner,
    fire_times_by_job,
    list_executions,
    list_members,
    list_recoveries,
    list_takeovers,
)

__all__ = ["Note", "Observation", "event_lines", "observe", "spread_text"]


@dataclass(frozen=True)
class Note:
    """Something the demo itself did, at ``at_ms`` (epoch ms)."""

    at_ms: int
    text: str


@dataclass(frozen=True)
class Observation:
    """The cluster as read at one moment; times are epoch ms."""

    rows: list[dict[str, Any]]  # member rows of ``qwc members``
    changes: list[MembershipChange]
    proposals: list[TakeoverProposal]
    takeovers: list[TakeoverRow]  # oldest first
    fires_by_member: dict[str, int]
    jobs_fired: int  # jobs with at least one scheduled execution
    double_fires: int
    recovery_proposals: list[RecoveryProposal] = field(default_factory=list)
    recoveries: list[RecoveryRow] = field(default_factory=list)  # oldest first
    long_runs: list[ExecutionRow] = field(default_factory=list)  # of the long job, oldest first

    def state_of(self, member_uuid: str) -> str | None:
        """The member's state in the view, None when unknown."""
        return next((r["state"] for r in self.rows if r["uuid"] == member_uuid), None)

    def owned_by(self, member_uuid: str) -> int:
        """Jobs the member owns in the store."""
        return next((int(r["jobs_owned"]) for r in self.rows if r["uuid"] == member_uuid), 0)

    def long_run(self, execution_id: str | None) -> ExecutionRow | None:
        """The execution ``execution_id`` of the long job, if seen."""
        return next((e for e in self.long_runs if e.id == execution_id), None)


def observe(
    client: redis.Redis, store: Store, keys: Keys, *, long_job: str | None = None
) -> Observation:
    """Read the view, the membership, takeover and recovery streams, and the store
    (with the executions of the job ``long_job``, when given)."""
    snap = view.read_snapshot(client, keys)
    rows = member_rows(
        now_ms=snap.now_ms,
        seen_ms=snap.seen_ms,
        states={u: s.value for u, s in snap.states.items()},
        heartbeats=view.decode_heartbeats(snap.info),
        store_members=list_members(store),
        jobs_owned=count_jobs_by_owner(store),
    )
    return Observation(
        rows=rows,
        changes=_stream(client, keys.membership, MembershipChange),
        proposals=_stream(client, keys.takeover, TakeoverProposal),
        takeovers=list(reversed(list_takeovers(store, limit=None))),
        fires_by_member=count_executions_by_member(store),
        jobs_fired=len(fire_times_by_job(store)),
        double_fires=count_double_fires(store),
        recovery_proposals=_stream(client, keys.recovery, RecoveryProposal),
        recoveries=list(reversed(list_recoveries(store, limit=None))),
        long_runs=(
            sorted(list_executions(store, job_id=long_job), key=lambda e: (e.created_ms, e.attempt))
            if long_job
            else []
        ),
    )


def _stream(client: redis.Redis, stream: str, kind: type[Any]) -> list[Any]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream))
    out = []
    for _, fields in entries:
        try:
            out.append(decode_as(fields[MESSAGE_FIELD], kind))
        except (DecodeError, KeyError):
            continue  # not ours to judge here: the workers dead-letter it
    return out


def event_lines(
    obs: Observation, notes: Sequence[Note], names: Mapping[str, str], *, start_ms: int
) -> list[str]:
    """Every event so far, oldest first, as ``+seconds  text`` (relative to ``start_ms``)."""
    events = [(n.at_ms, n.text) for n in notes]
    for c in obs.changes:
        who = names.get(c.uuid) or c.name or c.uuid[:8]
        text = f"{who}: {c.from_state or 'new'} -> {c.to_state}"
        if c.from_state is not None:
            text += f" (last heartbeat {c.at_ms - c.last_seen_ms} ms before)"
        events.append((c.at_ms, text))
    for p in obs.proposals:
        who = names.get(p.dead_uuid, p.dead_uuid[:8])
        due_s = (p.due_at_ms - p.proposed_at_ms) / 1000
        events.append((p.proposed_at_ms, f"{who}: takeover proposed, due in {due_s:g} s"))
    for t in obs.takeovers:
        if t.decided_ms is not None:
            events.append((t.decided_ms, _takeover_text(t, names)))
    for rp in obs.recovery_proposals:
        who = names.get(rp.dead_uuid, rp.dead_uuid[:8])
        due_s = (rp.due_at_ms - rp.proposed_at_ms) / 1000
        events.append((rp.proposed_at_ms, f"{who}: recovery proposed, due in {due_s:g} s"))
    for rec in obs.recoveries:
        if rec.decided_ms is not None:
            events.append((rec.decided_ms, _recovery_text(rec, names)))
    for run in obs.long_runs:
        events += _run_events(run, names)
    events.sort(key=lambda e: e[0])
    return [f"{(at_ms - start_ms) / 1000:+8.3f} s  {text}" for at_ms, text in events]


def _takeover_text(t: TakeoverRow, names: Mapping[str, str]) -> str:
    who = names.get(t.dead_uuid, t.dead_uuid[:8])
    if t.outcome != "committed":
        return f"{who}: takeover {t.outcome} ({t.detail})"
    after_s = ((t.decided_ms or t.proposed_ms) - t.proposed_ms) / 1000
    return (
        f"{who}: takeover COMMITTED (+{after_s:.3f} s), "
        f"{t.jobs_moved} jobs -> {spread_text(t.destinations, names)}"
    )


def _recovery_text(rec: RecoveryRow, names: Mapping[str, str]) -> str:
    who = names.get(rec.dead_uuid, rec.dead_uuid[:8])
    if rec.outcome != "committed":
        return f"{who}: recovery {rec.outcome} ({rec.detail})"
    moved = ", ".join(
        f"attempt {r['attempt']} -> {names.get(r['to'], str(r['to'])[:8])}" for r in rec.retries
    )
    return f"{who}: recovery COMMITTED, {rec.executions_marked} execution(s) incomplete" + (
        f"; retry {moved}" if moved else ""
    )


def _run_events(run: ExecutionRow, names: Mapping[str, str]) -> list[tuple[int, str]]:
    where = names.get(run.member_uuid, run.member_uuid[:8])
    what = f"long-running attempt {run.attempt} on {where}"
    out = []
    if run.started_ms is not None:
        out.append((run.started_ms, f"{what}: started"))
    if run.ended_ms is not None:
        out.append((run.ended_ms, f"{what}: {run.status}"))
    return out


def spread_text(destinations: Mapping[str, int], names: Mapping[str, str]) -> str:
    """``node-1 5, node-2 5``: jobs per destination member, by name."""
    named = sorted((names.get(u, u[:8]), n) for u, n in destinations.items())
    return ", ".join(f"{name} {n}" for name, n in named) or "nobody"
