"""Scale: N simulated members heartbeating every second against one liveness worker, then two.

A generator process publishes every member's heartbeat once per ``--interval`` (spread
evenly over the interval, pipelined ``XADD`` as members do) and records each entry id. One
(then two) real ``qwc worker liveness`` processes share the group. After ``--warmup``
seconds (every member's first sighting, 10,000 membership changes written to the store),
a sampler reads, every ``--sample-ms``, the group's processing frontier — the oldest entry
not acknowledged yet (``XPENDING``), else the last delivered one (``XINFO GROUPS``) — with
the Redis ``TIME`` in one transaction. A heartbeat's lag is the time from its ``XADD``
(its entry id) to the first sample whose frontier is past it: an upper bound, at most one
sample period above the true lag. Printed per phase: heartbeats sent and processed per
second, lag p50/p99/max, each worker's CPU share (user + system time of the process over
the wall time: 1.00 = one core), the Redis server's and the generator's. Target: one
worker keeps up with lag p99 < 1 s.

Each phase has its own key prefix and (by default) its own SQLite file. considerInactive
and considerDead default to 30 s and 60 s: the warm-up declares 10,000 members active at
once, and a worker that falls behind by more than considerInactive during it would sweep
members as silent whose heartbeats it simply has not read yet (see docs/operations.md,
"Sizing").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import psutil
import redis

from producers.heartbeat import HEARTBEATS_MAXLEN
from schemas.codec import encode
from schemas.keys import GROUP_LIVENESS, Keys
from schemas.messages import Heartbeat
from workers.bus.embedded import EmbeddedRedis
from workers.store import create_store_engine, upgrade

SEQ_BITS = 20  # an entry id "ms-seq" as one int: ms << SEQ_BITS | seq


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scale", help=__doc__.splitlines()[0])
    p.add_argument("--redis-url", default=None, help="default: an embedded server in a temp dir")
    p.add_argument(
        "--database-url",
        default=None,
        help="default: a fresh SQLite file per phase; an empty database, shared by the phases",
    )
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--interval", type=float, default=1.0, help="heartbeat interval, s")
    p.add_argument("--warmup", type=float, default=20.0, help="s before measuring")
    p.add_argument("--inactive", type=float, default=30.0, help="considerInactive, s")
    p.add_argument("--dead", type=float, default=60.0, help="considerDead, s")
    p.add_argument("--seconds", type=float, default=30.0, help="s measured per phase")
    p.add_argument("--sample-ms", type=int, default=20)
    p.add_argument("--workers", default="1,2", help="workers in each phase, comma-separated")
    p.add_argument("--logs", type=Path, default=None, help="directory for the workers' logs")
    p.set_defaults(run=run)


def id_int(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = raw.partition("-")
    return int(ms) << SEQ_BITS | int(seq or 0)


# -- the simulated members -------------------------------------------------------------------


# One round trip per tick: the server does one XADD per heartbeat, as from separate members,
# while the generator's own CPU (which shares the machine with the workers) stays small.
XADD_BATCH = """
local ids = {}
for i = 2, #ARGV do
  ids[i - 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[i])
end
return ids
"""


def generate(
    url: str, prefix: str, members: int, interval_s: float, stop: Event, out: Connection
) -> None:
    """Publish each member's heartbeat every ``interval_s`` in 10 ms ticks until ``stop``;
    send back the entry ids (as ints) over ``out``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    client = redis.Redis.from_url(url)
    xadd_batch = client.register_script(XADD_BATCH)
    stream = Keys(prefix).heartbeats
    beats = [
        encode(
            Heartbeat(uuid=str(uuid.uuid4()), name=f"m{i}", seq=1, started_at_ms=0, sent_at_ms=0)
        )
        for i in range(members)
    ]
    ticks = max(1, round(interval_s / 0.01))
    per_tick = -(-members // ticks)
    ids = array("q")
    start, tick = time.monotonic(), 0
    while not stop.is_set():
        first = (tick % ticks) * per_tick
        batch = beats[first : first + per_tick]
        ids.extend(id_int(i) for i in xadd_batch(keys=[stream], args=[HEARTBEATS_MAXLEN, *batch]))
        tick += 1
        time.sleep(max(0.0, start + tick * interval_s / ticks - time.monotonic()))
    out.send(ids)
    client.close()


# -- sampling the frontier -------------------------------------------------------------------


def frontier(client: redis.Redis, stream: str) -> tuple[int, int]:
    """(Redis server ms, frontier): every entry id < frontier has been processed."""
    pipe = client.pipeline(transaction=True)
    pipe.time()
    pipe.xpending(stream, GROUP_LIVENESS)
    pipe.xinfo_groups(stream)
    (sec, usec), pending, groups = pipe.execute()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    if pending["pending"]:
        return now_ms, id_int(pending["min"])
    group = next(g for g in groups if g["name"] == GROUP_LIVENESS.encode())
    return now_ms, id_int(group["last-delivered-id"]) + 1


@dataclass
class Phase:
    workers: int
    seconds: float
    sent: int
    processed: int
    lags_ms: list[int]
    unprocessed: int
    worker_cpu: list[float]
    redis_cpu: float
    generator_cpu: float


def lags(
    ids: array[int], samples: list[tuple[int, int]], t0_ms: int, t1_ms: int
) -> tuple[list[int], int]:
    """Lag (ms) of each heartbeat sent in [t0_ms, t1_ms): the first sample time whose
    frontier is past it, minus its send time; and how many were never seen processed."""
    times = [t for t, _ in samples]
    fronts = [f for _, f in samples]
    for i in range(1, len(fronts)):  # a frontier never moves back (monotone for bisect)
        fronts[i] = max(fronts[i], fronts[i - 1])
    out, missing = [], 0
    for entry in ids:
        sent_ms = entry >> SEQ_BITS
        if not t0_ms <= sent_ms < t1_ms:
            continue
        k = bisect_right(fronts, entry)
        if k == len(fronts):
            missing += 1
        else:
            out.append(max(0, times[k] - sent_ms))
    return sorted(out), missing


def percentile(sorted_values: list[int], missing: int, q: float) -> str:
    """The ``q`` quantile of the lags (ms), counting the ``missing`` (never seen processed:
    still pending at the end, or trimmed from the stream unread) as the longest."""
    total = len(sorted_values) + missing
    if total == 0:
        return "-"
    k = min(total - 1, int(q * total))
    return f"{sorted_values[k]}" if k < len(sorted_values) else "unprocessed"


# -- one phase -------------------------------------------------------------------------------


def start_workers(n: int, env: dict[str, str], logs: Path | None) -> list[subprocess.Popen[bytes]]:
    """``n`` real liveness workers (``-v``, logging to ``logs/scale-<n>-<i>.log`` if given)."""
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(1, n + 1):
        argv = [sys.executable, "-m", "workers.cli", "-v", "worker", "liveness"]
        log = logs / f"scale-{n}-{i}.log" if logs is not None else Path(os.devnull)
        with log.open("ab") as out:
            procs.append(
                subprocess.Popen(
                    [*argv, "--consumer", f"scale-{i}"], env=env, stdout=out, stderr=out
                )
            )
    return procs


def cpu_s(procs: list[psutil.Process]) -> list[float]:
    return [sum(p.cpu_times()[:2]) for p in procs]


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_phase(args: argparse.Namespace, url: str, env: dict[str, str], workers: int) -> Phase:
    prefix = env["QWC_REDIS_PREFIX"]
    client = redis.Redis.from_url(url)
    stream = Keys(prefix).heartbeats
    procs = start_workers(workers, env, args.logs)
    stop = multiprocessing.get_context("fork").Event()
    recv, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    gen = multiprocessing.get_context("fork").Process(
        target=generate, args=(url, prefix, args.members, args.interval, stop, send)
    )
    try:
        gen.start()
        time.sleep(args.warmup)
        watched = [psutil.Process(p.pid) for p in procs]
        generator = [psutil.Process(gen.pid)]
        cpu0, rcpu0, wall0 = cpu_s(watched), redis_cpu_s(client), time.monotonic()
        gcpu0 = cpu_s(generator)[0]
        samples = [frontier(client, stream)]
        while time.monotonic() - wall0 < args.seconds:
            time.sleep(args.sample_ms / 1000)
            samples.append(frontier(client, stream))
        cpu1, rcpu1, wall = cpu_s(watched), redis_cpu_s(client), time.monotonic() - wall0
        gcpu = (cpu_s(generator)[0] - gcpu0) / wall
        t1_ms = samples[-1][0]
        tail_end = time.monotonic() + 5.0  # let the last heartbeats be processed and seen
        while time.monotonic() < tail_end and samples[-1][1] <= t1_ms << SEQ_BITS:
            time.sleep(args.sample_ms / 1000)
            samples.append(frontier(client, stream))
        stop.set()
        ids: array[int] = recv.recv()
        gen.join()
    finally:
        stop.set()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(15)
        client.close()
    t0_ms = samples[0][0]
    measured, missing = lags(ids, samples, t0_ms, t1_ms)
    sent = sum(1 for e in ids if t0_ms <= e >> SEQ_BITS < t1_ms)
    return Phase(
        workers=workers,
        seconds=wall,
        sent=sent,
        processed=len(measured),
        lags_ms=measured,
        unprocessed=missing,
        worker_cpu=[(b - a) / wall for a, b in zip(cpu0, cpu1, strict=True)],
        redis_cpu=(rcpu1 - rcpu0) / wall,
        generator_cpu=gcpu,
    )


def report(phase: Phase, members: int) -> None:
    span_s = phase.seconds
    p50 = percentile(phase.lags_ms, phase.unprocessed, 0.50)
    p99 = percentile(phase.lags_ms, phase.unprocessed, 0.99)
    worst = percentile(phase.lags_ms, phase.unprocessed, 1.0)
    cpus = " + ".join(f"{c:.2f}" for c in phase.worker_cpu)
    print(f"-- {phase.workers} liveness worker(s), {members} members, {span_s:.0f} s measured")
    print(f"   heartbeats sent      : {phase.sent / span_s:10,.0f} /s")
    print(
        f"   heartbeats processed : {phase.processed / span_s:10,.0f} /s"
        f"  ({phase.unprocessed} never processed: trimmed unread or still pending)"
    )
    print(f"   lag p50 / p99 / max  : {p50} / {p99} / {worst} ms  (target p99 < 1000)")
    print(f"   worker CPU share     : {cpus} of one core each")
    print(f"   Redis server CPU     : {phase.redis_cpu:.2f} of one core")
    print(
        f"   generator CPU        : {phase.generator_cpu:.2f} of one core (the simulated members)"
    )


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="qwc-scale-") as tmp:
        home = Path(tmp)
        url = args.redis_url or EmbeddedRedis(home).ensure()
        where = args.redis_url or "embedded (unix socket)"
        print(f"machine: {os.cpu_count()} cores; Redis {redis_version(url)} at {where}")
        try:
            for n in [int(w) for w in args.workers.split(",")]:
                prefix = f"qwc-scale-{uuid.uuid4().hex[:8]}"  # its own keys: nothing is flushed
                env = _env(url, _database(args, home / f"phase-{n}.db"), home, prefix, args)
                report(run_phase(args, url, env, n), args.members)
                _clear(url, prefix)
        finally:
            if args.redis_url is None:
                EmbeddedRedis(home).stop()
    return 0


def _database(args: argparse.Namespace, sqlite_path: Path) -> str:
    """A migrated database for one phase: ``--database-url``, else a fresh SQLite file (a
    phase must not inherit the previous phase's 10,000 members: the view would watch them
    and declare them all inactive in the middle of the measurement)."""
    url = args.database_url or f"sqlite:///{sqlite_path}"
    engine = create_store_engine(url)
    upgrade(engine)
    engine.dispose()
    return str(url)


def _env(
    url: str, db_url: str, home: Path, prefix: str, args: argparse.Namespace
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    env.update(
        QWC_REDIS_URL=url,
        QWC_DATABASE_URL=db_url,
        QWC_HOME=str(home),
        QWC_REDIS_PREFIX=prefix,
        QWC_CLUSTERMODE_HEARTBEAT_INTERVAL=str(args.interval),
        QWC_CLUSTERMODE_HEARTBEAT_CONSIDERINACTIVE=str(args.inactive),
        QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD=str(args.dead),
    )
    return env


def redis_version(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def _clear(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000):
            client.delete(key)
    finally:
        client.close()
