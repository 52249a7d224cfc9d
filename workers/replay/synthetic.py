"""Synthetic recordings: N members heartbeating every interval, with silences (seeded).

For tests and the benchmark: it writes the recording format of ``qwc record`` directly,
without Redis. Each member heartbeats every ``interval_s`` at its own phase (member ``i``
at ``i * interval / N``), except inside its silences: a silence with an end is a gap (a
pause, a partition) after which the member comes back; one without an end is a death.
``random_silences`` draws gaps, deaths and returns from a seed. The payloads are the
bytes :func:`schemas.codec.encode` gives a :class:`schemas.messages.Heartbeat` (a test
checks it), written without building a model per entry.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from schemas.codec import encode
from schemas.messages import Heartbeat, ViewRestart
from workers.replay.fileformat import RecordingWriter
from workers.replay.records import ExecutionRecord, JobRecord, RecordingHeader, Snapshot

__all__ = ["Silence", "TraceSpec", "member_uuid", "random_silences", "write_trace"]

_NAMESPACE = uuidlib.UUID("0d6f2a8e-7b1c-4e59-a3d0-5c8e9f1b2a47")
_BLOCK = 10_000


@dataclass(frozen=True)
class Silence:
    """Member ``member`` (index) sends nothing from ``from_s`` until ``to_s`` (None: never
    again), seconds after the trace's start."""

    member: int
    from_s: float
    to_s: float | None = None


@dataclass(frozen=True)
class TraceSpec:
    """A synthetic trace. ``settings`` (properties keys -> text) go in the header, with
    ``heartbeat.interval`` set to ``interval_s``. Each member owns ``jobs_per_member``
    jobs; ``running_per_member`` executions (attempt 1, jobs with ``retry_count``
    retries) are listed as running in its heartbeats. ``released_s``: when an operator
    ran ``qwc takeover release``. ``view_restarts_s``: when the view restarted on another
    Redis server (a failover)."""

    members: int
    interval_s: float
    duration_s: float
    silences: tuple[Silence, ...] = ()
    start_ms: int = 1_700_000_000_000
    seed: int = 0
    settings: Mapping[str, str] | None = None
    jobs_per_member: int = 0
    running_per_member: int = 0
    retry_count: int = 0
    released_s: float | None = None  # a `qwc takeover release` this long after the start
    view_restarts_s: tuple[float, ...] = ()


def member_uuid(seed: int, index: int) -> str:
    """The uuid of member ``index`` of a trace with ``seed``."""
    return str(uuidlib.uuid5(_NAMESPACE, f"member:{seed}:{index}"))


def _id(kind: str, seed: int, member: int, n: int) -> str:
    return str(uuidlib.uuid5(_NAMESPACE, f"{kind}:{seed}:{member}:{n}"))


def random_silences(
    members: int,
    duration_s: float,
    *,
    seed: int,
    gaps: int = 0,
    gap_s: tuple[float, float] = (0.0, 0.0),
    deaths: int = 0,
    returns: int = 0,
    return_after_s: tuple[float, float] = (0.0, 0.0),
) -> tuple[Silence, ...]:
    """``gaps`` silences of ``gap_s`` (min, max) seconds on random members, and ``deaths``
    members that stop at a random time, ``returns`` of which come back after
    ``return_after_s`` (min, max) seconds. The same arguments give the same silences."""
    rng = random.Random(seed)
    out = []
    for _ in range(gaps):
        start = rng.uniform(0, duration_s)
        out.append(Silence(rng.randrange(members), start, start + rng.uniform(*gap_s)))
    for i, m in enumerate(rng.sample(range(members), min(deaths, members))):
        start = rng.uniform(0, duration_s)
        end = start + rng.uniform(*return_after_s) if i < returns else None
        out.append(Silence(m, start, end))
    return tuple(out)


def write_trace(path: str | Path, spec: TraceSpec, *, level: int = 6) -> int:
    """Write the trace of ``spec`` to ``path``; returns the number of heartbeat entries."""
    uuids = [member_uuid(spec.seed, i) for i in range(spec.members)]
    end_ms = spec.start_ms + round(spec.duration_s * 1000)
    settings = {"qwcontrol.clusterMode.heartbeat.interval": f"{spec.interval_s:g}"}
    settings.update(spec.settings or {})
    header = RecordingHeader(
        created_ms=end_ms,
        source="synthetic",
        prefix="qwc",
        since_ms=spec.start_ms,
        until_ms=end_ms,
        start_ms=spec.start_ms,
        view_started_ms=spec.start_ms,
        released_ms=0 if spec.released_s is None else spec.start_ms + round(spec.released_s * 1000),
        settings=settings,
    )
    with RecordingWriter(path, level=level) as w:
        w.header(header)
        w.snapshot(_snapshot(spec, uuids))
        restarts = [spec.start_ms + round(t * 1000) for t in spec.view_restarts_s]
        w.block(
            "view-restarts",
            restarts,
            [0] * len(restarts),
            [encode(ViewRestart(run_id=f"{i:040x}")) for i in range(len(restarts))],
        )
        n = 0
        for ms, seq, raw in _blocks(spec, uuids, end_ms):
            w.block("heartbeats", ms, seq, raw)
            n += len(ms)
    return n


def _snapshot(spec: TraceSpec, uuids: Sequence[str]) -> Snapshot:
    jobs = [
        JobRecord(
            id=_id("job", spec.seed, i, j),
            name=f"job-{i + 1}-{j + 1}",
            owner_uuid=u,
            modified_by=u,
            modified_ms=spec.start_ms,
            created_ms=spec.start_ms,
            retry_count=spec.retry_count,
        )
        for i, u in enumerate(uuids)
        for j in range(spec.jobs_per_member)
    ]
    executions = [
        ExecutionRecord(
            id=_id("execution", spec.seed, i, k),
            job_id=_id("job", spec.seed, i, k % max(1, spec.jobs_per_member)),
            member_uuid=u,
        )
        for i, u in enumerate(uuids)
        for k in range(spec.running_per_member)
    ]
    owners = {u: spec.jobs_per_member for u in uuids} if spec.jobs_per_member else {}
    return Snapshot(jobs=jobs, owners=owners, executions=executions)


def _silent(spec: TraceSpec) -> dict[int, list[tuple[int, int | None]]]:
    out: dict[int, list[tuple[int, int | None]]] = {}
    for s in spec.silences:
        to_ms = None if s.to_s is None else spec.start_ms + round(s.to_s * 1000)
        out.setdefault(s.member, []).append((spec.start_ms + round(s.from_s * 1000), to_ms))
    return out


def _blocks(
    spec: TraceSpec, uuids: Sequence[str], end_ms: int
) -> Iterator[tuple[list[int], list[int], list[bytes]]]:
    interval_ms = round(spec.interval_s * 1000)
    silent = _silent(spec)
    packer = msgpack.Packer(use_bin_type=True)
    bodies = [_body(spec, i, u) for i, u in enumerate(uuids)]
    phases = [i * interval_ms // len(uuids) for i in range(len(uuids))]
    ms_out: list[int] = []
    seq_out: list[int] = []
    raw_out: list[bytes] = []
    last_ms, seq = -1, 0
    for tick in range((end_ms - spec.start_ms) // interval_ms + 1):
        base = spec.start_ms + tick * interval_ms
        for i, body in enumerate(bodies):
            t = base + phases[i]
            if t > end_ms or any(a <= t and (b is None or t < b) for a, b in silent.get(i, ())):
                continue
            body["seq"] = tick
            body["sent_at_ms"] = t
            seq = seq + 1 if t == last_ms else 0
            last_ms = t
            ms_out.append(t)
            seq_out.append(seq)
            raw_out.append(packer.pack(body))
            if len(ms_out) == _BLOCK:
                yield ms_out, seq_out, raw_out
                ms_out, seq_out, raw_out = [], [], []
    if ms_out:
        yield ms_out, seq_out, raw_out


def _body(spec: TraceSpec, i: int, uuid: str) -> dict[str, Any]:
    """The fields of member ``i``'s heartbeat in :func:`schemas.codec.encode`'s order."""
    running = [_id("execution", spec.seed, i, k) for k in range(spec.running_per_member)]
    hb = Heartbeat(
        uuid=uuid,
        name=f"node-{i + 1}",
        seq=0,
        started_at_ms=spec.start_ms,
        sent_at_ms=spec.start_ms,
        running=tuple(running),
    )
    body: dict[str, Any] = hb.model_dump(mode="json")
    body["t"] = Heartbeat.TYPE
    return body
