"""``qwc record``: the cluster's streams and a snapshot of the store, into one file.

It reads, with ``XRANGE`` in chunks (entry ids and raw payloads, nothing decoded on the
way), the heartbeats, membership, takeover, recovery and every member's command stream
between a start and ``until``; then the store: the jobs and their owners, the executions
the heartbeats list as running, the members, and the takeover and recovery audit rows of
the window. The window is ``since``..``until``; the entries start a warm-up earlier
(considerDead plus the longest delay + sleep), so that the replay knows every member's
last heartbeat and attempt window when the window opens. Each member's last membership
change before the start is kept as its prior state.

Redis keeps about 100,000 entries per stream (``MAXLEN ~``): what was trimmed cannot be
recorded; a window that starts before the oldest heartbeat is moved to it, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from schemas.codec import decode_many
from schemas.errors import NotFoundError
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat, MembershipChange
from schemas.settings import Settings
from workers.bus.streams import server_time_ms
from workers.replay.fileformat import RecordingWriter
from workers.replay.records import (
    AuditRecord,
    ExecutionRecord,
    JobRecord,
    MemberRecord,
    PriorState,
    RecordingHeader,
    Snapshot,
)
from workers.replay.settings import recorded_settings
from workers.store import (
    Store,
    get_execution,
    list_jobs,
    list_members,
    list_recoveries,
    list_takeovers,
)

__all__ = ["RecordResult", "record", "warmup_ms"]

log = logging.getLogger(__name__)

CHUNK = 10_000
Entries = list[tuple[int, int, bytes]]


@dataclass
class RecordResult:
    """What ``record`` wrote: the file, the window, entries per stream, and warnings."""

    path: Path
    header: RecordingHeader
    entries: dict[str, int]
    jobs: int
    warnings: list[str] = field(default_factory=list)


def warmup_ms(settings: Settings) -> int:
    """How long before ``since`` the entries start: considerDead, plus the longest
    proposal delay + sleep (so attempt windows open before ``since`` are known)."""
    longest = max(
        settings.autotakeover_delay_s + settings.autotakeover_sleep_s,
        settings.recover_delay_s + settings.recover_sleep_s,
    )
    return round((settings.heartbeat_consider_dead_s + longest) * 1000)


def record(
    r: redis.Redis,
    store: Store,
    settings: Settings,
    out: Path,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> RecordResult:
    """Record the window ``since_ms``..``until_ms`` (None: the oldest heartbeat .. now, on
    the Redis server's clock) to ``out``. Redis and SQL errors propagate."""
    keys = Keys(settings.redis_prefix)
    since, start, until, warnings = _window(r, keys, settings, since_ms, until_ms)
    small: dict[str, Entries] = {
        name: _read(r, key, start, until)
        for name, key in (
            ("membership", keys.membership),
            ("takeover", keys.takeover),
            ("recovery", keys.recovery),
        )
    }
    small["view-restarts"] = _read(r, keys.view_restarts, 0, until)
    for key in sorted(_command_streams(r, keys)):
        small["commands:" + key.removeprefix(keys.commands(""))] = _read(r, key, start, until)
    heartbeats = _read(r, keys.heartbeats, start, until)
    header = RecordingHeader(
        created_ms=server_time_ms(r),
        source="redis",
        prefix=settings.redis_prefix,
        since_ms=since,
        until_ms=until,
        start_ms=start,
        view_started_ms=_int(r.get(keys.view_started)),
        released_ms=_int(r.get(keys.takeover_released)) or 0,
        settings=recorded_settings(settings),
    )
    snapshot = _snapshot(store, r, keys, heartbeats, start, until)
    with RecordingWriter(out) as w:
        w.header(header)
        w.snapshot(snapshot)
        for name, part in small.items():
            _write(w, name, part)
        _write(w, "heartbeats", heartbeats)
    counts = dict(w.entries)
    log.info("recorded %s entries to %s", sum(counts.values()), out)
    return RecordResult(out, header, counts, len(snapshot.jobs), warnings)


def _window(
    r: redis.Redis, keys: Keys, settings: Settings, since_ms: int | None, until_ms: int | None
) -> tuple[int, int, int, list[str]]:
    """(since, start, until, warnings): the window, moved to the oldest heartbeat still in
    Redis, and the start of its warm-up."""
    until = until_ms if until_ms is not None else server_time_ms(r)
    oldest = _oldest_ms(r, keys.heartbeats)
    warnings = []
    since = since_ms if since_ms is not None else (oldest if oldest is not None else until)
    if oldest is not None and since < oldest:
        if since_ms is not None:
            warnings.append(
                f"heartbeats before {oldest} ms are no longer in Redis (the stream keeps about "
                "100,000 entries): the window starts at the oldest heartbeat"
            )
        since = oldest
    start = max(since - warmup_ms(settings), oldest if oldest is not None else since)
    return since, start, until, warnings


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _oldest_ms(r: redis.Redis, stream: str) -> int | None:
    first = cast(list[tuple[bytes, Any]], r.xrange(stream, count=1))
    return int(first[0][0].split(b"-")[0]) if first else None


def _command_streams(r: redis.Redis, keys: Keys) -> set[str]:
    pattern = keys.commands("*")
    return {k.decode() for k in r.scan_iter(match=pattern, count=1000, _type="STREAM")}


def _read(r: redis.Redis, stream: str, start_ms: int, until_ms: int) -> Entries:
    """Entries of ``stream`` with ids from ``start_ms`` to ``until_ms`` (inclusive)."""
    out: Entries = []
    low = f"{start_ms}-0"
    while True:
        chunk = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            r.xrange(stream, min=low, max=f"{until_ms}", count=CHUNK),
        )
        for entry_id, fields in chunk:
            ms, _, seq = entry_id.partition(b"-")
            out.append((int(ms), int(seq), (fields or {}).get(MESSAGE_FIELD, b"")))
        if len(chunk) < CHUNK:
            return out
        low = "(" + chunk[-1][0].decode()


def _write(w: RecordingWriter, stream: str, entries: Entries) -> None:
    for i in range(0, len(entries), CHUNK):
        part = entries[i : i + CHUNK]
        w.block(stream, [e[0] for e in part], [e[1] for e in part], [e[2] for e in part])


def _snapshot(
    store: Store, r: redis.Redis, keys: Keys, heartbeats: Entries, start: int, until: int
) -> Snapshot:
    beats = [m for m in decode_many([e[2] for e in heartbeats]) if isinstance(m, Heartbeat)]
    heard = {hb.uuid for hb in beats}
    running = sorted({eid for hb in beats for eid in hb.running})
    jobs = [
        JobRecord(
            id=j.id,
            name=j.name,
            owner_uuid=j.owner_uuid,
            owner_epoch=j.owner_epoch,
            modified_by=j.modified_by,
            modified_ms=j.modified_ms,
            created_ms=j.created_ms,
            retry_count=j.retry_count,
            retry_delay_s=j.retry_delay_s,
        )
        for j in list_jobs(store)
    ]
    owners: dict[str, int] = {}
    for j in jobs:
        owners[j.owner_uuid] = owners.get(j.owner_uuid, 0) + 1
    members = [
        MemberRecord(uuid=m.uuid, name=m.name, state=m.state, last_seen_ms=m.last_seen_ms)
        for m in list_members(store)
    ]
    prior = _prior(r, keys, start)
    return Snapshot(
        jobs=jobs,
        owners=dict(sorted(owners.items())),
        executions=list(_executions(store, running)),
        members=members,
        prior=prior,
        unheard=_unheard(jobs, members, heard | {p.uuid for p in prior}),
        takeovers=[
            _takeover(t)
            for t in list_takeovers(store, limit=None)
            if start <= t.proposed_ms <= until
        ],
        recoveries=[
            _recovery(t)
            for t in list_recoveries(store, limit=None)
            if start <= t.proposed_ms <= until
        ],
    )


def _prior(r: redis.Redis, keys: Keys, start: int) -> list[PriorState]:
    """Each member's last membership change before ``start``."""
    last: dict[str, MembershipChange] = {}
    entries = _read(r, keys.membership, 0, start - 1) if start > 0 else []
    for msg in decode_many([e[2] for e in entries]):
        if isinstance(msg, MembershipChange):
            last[msg.uuid] = msg
    return [
        PriorState(
            uuid=c.uuid, name=c.name, state=c.to_state, last_seen_ms=c.last_seen_ms, at_ms=c.at_ms
        )
        for _, c in sorted(last.items())
    ]


def _executions(store: Store, ids: Iterable[str]) -> Iterable[ExecutionRecord]:
    for eid in ids:
        try:
            e = get_execution(store, eid)
        except NotFoundError:
            continue
        yield ExecutionRecord(
            id=e.id,
            job_id=e.job_id,
            member_uuid=e.member_uuid,
            attempt=e.attempt,
            retry_of=e.retry_of,
        )


def _unheard(jobs: list[JobRecord], members: list[MemberRecord], heard: set[str]) -> dict[str, int]:
    """Store members (and job owners) no heartbeat names and without a prior state, with
    since when the liveness view could know them (their first job's creation; 0: always)."""
    out: dict[str, int] = {m.uuid: 0 for m in members if m.uuid not in heard}
    for j in jobs:
        if j.owner_uuid not in heard:
            out[j.owner_uuid] = min(out.get(j.owner_uuid, j.created_ms), j.created_ms)
    return dict(sorted(out.items()))


def _takeover(t: Any) -> AuditRecord:
    return AuditRecord(
        proposal_id=t.proposal_id,
        dead_uuid=t.dead_uuid,
        policy=t.policy,
        proposed_ms=t.proposed_ms,
        due_ms=t.due_ms,
        decided_ms=t.decided_ms,
        outcome=t.outcome,
        count=t.jobs_moved,
        destinations=dict(sorted(t.destinations.items())),
        detail=t.detail,
    )


def _recovery(t: Any) -> AuditRecord:
    destinations: dict[str, int] = {}
    for retry in t.retries:
        destinations[retry["to"]] = destinations.get(retry["to"], 0) + 1
    return AuditRecord(
        proposal_id=t.proposal_id,
        dead_uuid=t.dead_uuid,
        policy=t.policy,
        proposed_ms=t.proposed_ms,
        due_ms=t.due_ms,
        decided_ms=t.decided_ms,
        outcome=t.outcome,
        count=t.executions_marked,
        destinations=dict(sorted(destinations.items())),
        detail=t.detail,
    )
