"""Replay speed: a synthetic 24-hour trace of 1,000 members heartbeating every 30 s.

Generates the trace (2.88 M heartbeat entries, with a few gaps, deaths and returns, seeded)
in the recording format, then times ``workers.replay.engine.replay`` over it on one core:
read, decompress, batch-decode (``schemas.codec.decode_many``), the liveness rules on a
heap of deadlines, the takeover and recovery decisions. Target: under 30 s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from workers.replay.engine import replay
from workers.replay.fileformat import read_recording
from workers.replay.settings import replay_settings
from workers.replay.synthetic import TraceSpec, random_silences, write_trace

TARGET_S = 30.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--interval", type=float, default=30.0, help="heartbeat interval, seconds")
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="best of N replays")
    p.add_argument("--exhaustive", action="store_true", help="decide every heartbeat")
    p.set_defaults(run=run)


def spec_for(members: int, interval_s: float, hours: float, seed: int) -> TraceSpec:
    """The benchmark's trace: gaps of 1-10 min, deaths (some coming back), takeovers on."""
    duration_s = hours * 3600
    silences = random_silences(
        members,
        duration_s,
        seed=seed,
        gaps=members // 20,
        gap_s=(60.0, 600.0),
        deaths=max(1, members // 100),
        returns=max(1, members // 200),
        return_after_s=(600.0, 7200.0),
    )
    on = {
        "qwcontrol.clusterMode.autotakeover.enabled": "true",
        "qwcontrol.clusterMode.recoverExecutions.enabled": "true",
    }
    return TraceSpec(
        members=members,
        interval_s=interval_s,
        duration_s=duration_s,
        silences=silences,
        seed=seed,
        settings=on,
        jobs_per_member=2,
    )


def run(args: argparse.Namespace) -> int:
    spec = spec_for(args.members, args.interval, args.hours, args.seed)
    with tempfile.TemporaryDirectory(prefix="qwc-bench-replay-") as tmp:
        path = Path(tmp) / "trace.qwcrec"
        t0 = time.perf_counter()
        n = write_trace(path, spec, level=1)
        made_s = time.perf_counter() - t0
        print(
            f"trace: {n:,} heartbeats, {args.members} members every {args.interval:g} s "
            f"for {args.hours:g} h; {os.path.getsize(path) / 1e6:.1f} MB, written in "
            f"{made_s:.1f} s"
        )
        best = None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            with read_recording(path) as rec:
                result = replay(
                    rec, replay_settings(rec.header.settings), exhaustive=args.exhaustive
                )
            elapsed = time.perf_counter() - t0
            best = elapsed if best is None else min(best, elapsed)
        assert best is not None
        changes = sum(1 for e in result.events if e.kind == "state")
        decided = sum(1 for e in result.events if e.kind == "decided")
        print(
            f"replay: {result.heartbeats:,} entries in {best:.2f} s = "
            f"{result.heartbeats / best:,.0f} entries/s (best of {args.rounds}); "
            f"{changes} state changes, {decided} decisions"
        )
        print(f"target: < {TARGET_S:g} s  -> {'ok' if best < TARGET_S else 'MISSED'}")
    return 0
