"""Executions of one member: N jobs firing every second (``true``), beside the floor.

For each rate N (``--rates``, default 50,100,200,400) a real ``qwc node`` owns N jobs with
the schedule ``* * * * * *``, the command ``true`` and the default concurrency policy
``forbid`` (each fire pays the policy's check; a fire that finds the job's previous
execution not ended yet is ``skipped``, counted apart and left out of the lateness); after
``--warmup`` seconds the fires of ``--seconds`` whole seconds are measured from the store:
executions claimed and started per second, start lateness (started - fire time) p50/p99/max
of the executions fired in the window (one not started by the end counts as the longest) and
where it went (the time of the loop's claiming pass from the fire time: a claim ahead of it
is negative; the dispatcher marks what was claimed ahead queued at its fire time, before it
is due, so the store does not say when it was put on the queue), the backlog at the end
(fired in the window, not started), and the node's CPU share (user + system time over wall
time, 1.00 = one core; its commands' CPU apart). Also what a started execution cost the
whole machine's CPU (every process: the node, its commands, the store's server, Redis), and
what one second's burst of N costs at that rate: the node's CPU for all N (its threads take turns in
one interpreter) and the time it keeps every core busy (docs/operations.md, "Sizing", says
which bounds the last start). The floor, measured in the same run: ``true`` spawned as fast
as possible by a pool of ``--threads`` threads in one Python process, and what each spawn
cost the machine.

``--candidates M`` (default 300; 0: skip) also prints, for M queued executions of
``true``, how fast each way of consuming a member's RQ queue considered for issue 13 runs
them (:mod:`bench.executions_candidates`): the node's pool, RQ's ``SimpleWorker`` and
RQ's forking ``Worker``.

Targets (issue 13): at 100 jobs/s every execution starts, the backlog stays 0 and start
lateness p99 < 100 ms; a member sustains >= 200 executions/s. Printed, never asserted.

Each rate has its own member and jobs (a fresh SQLite file by default); with
``--database-url`` (migrated; nothing is dropped) the rows of every rate stay there.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, select

from bench import executions_candidates
from bench.scale import redis_version
from schemas.tables import executions
from workers.bus.embedded import EmbeddedRedis
from workers.store import Store, create_job, create_store_engine, upgrade

TARGET_P99_MS = 100
TARGET_RATE = 200


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "executions",
        help=__doc__.splitlines()[0],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database-url", default=None, help="default: a fresh SQLite file per rate")
    p.add_argument("--redis-url", default=None, help="default: an embedded server in a temp dir")
    p.add_argument("--rates", default="50,100,200,400", help="jobs firing every second")
    p.add_argument("--seconds", type=int, default=10, help="whole seconds measured per rate")
    p.add_argument("--warmup", type=float, default=3.0, help="s before measuring")
    p.add_argument("--threads", type=int, default=10, help="qwcontrol.executions.threadCount")
    p.add_argument("--candidates", type=int, default=300, help="executions per candidate")
    p.add_argument("--logs", type=Path, default=None, help="directory for the nodes' logs")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Window:
    """What one rate measured: fires in ``[t0_ms, t1_ms)``."""

    rate: int
    seconds: float
    fired: int
    skipped: int  # by the concurrency policy: never to start
    started: int
    lateness_ms: list[int]  # sorted, of the executions started
    claimed_ms: list[int]  # sorted: the claiming pass's time - fire time
    backlog: int
    node_cpu: float
    commands_cpu: float
    machine_cpu: float  # busy time of every core over wall time (2.00 = two cores)


def floor(threads: int, seconds: float = 2.0) -> tuple[float, float]:
    """``true`` spawned per second by ``threads`` threads in this process, and what each
    cost the machine's CPU (ms, every process)."""
    stop = threading.Event()
    counts = [0] * threads

    def spawn(i: int) -> None:
        while not stop.is_set():
            subprocess.run(["true"], check=True)
            counts[i] += 1

    with ThreadPoolExecutor(threads) as pool:
        t0, busy0 = time.monotonic(), _busy_s()
        for i in range(threads):
            pool.submit(spawn, i)
        time.sleep(seconds)
        stop.set()
    busy_s, spawned = _busy_s() - busy0, sum(counts)
    return spawned / (time.monotonic() - t0), busy_s * 1000 / max(1, spawned)


def _jobs(store: Store, member: str, rate: int) -> None:
    project = f"bench-{member[:8]}"
    now_ms = time.time_ns() // 1_000_000
    for i in range(rate):
        create_job(
            store,
            project=project,
            group_name="",
            name=f"tick-{i}",
            command=["true"],
            schedule="* * * * * *",
            modified_by=member,
            now_ms=now_ms,
        )


def _measure(
    store: Store, member: str, t0_ms: int, t1_ms: int
) -> tuple[int, int, int, list[int], list[int]]:
    """(fired in the window, skipped of those, started in the window, sorted lateness of
    those fired and not skipped, and of their claiming passes)."""
    e = executions
    mine = (e.c.member_uuid == member, e.c.fire_ms >= t0_ms, e.c.fire_ms < t1_ms)
    started_in = (e.c.member_uuid == member, e.c.started_ms >= t0_ms, e.c.started_ms < t1_ms)
    with store.engine.connect() as conn:
        fired = int(conn.execute(select(func.count()).where(*mine)).scalar_one())
        skipped_q = select(func.count()).where(*mine, e.c.status == "skipped")
        skipped = int(conn.execute(skipped_q).scalar_one())
        started = int(conn.execute(select(func.count()).where(*started_in)).scalar_one())
        stages = conn.execute(
            select(
                e.c.started_ms - e.c.fire_ms,
                e.c.created_ms - e.c.fire_ms,
            ).where(*mine, e.c.status != "skipped")
        ).all()

    def sorted_ms(column: int) -> list[int]:
        return sorted(int(row[column]) for row in stages if row[column] is not None)

    return fired, skipped, started, sorted_ms(0), sorted_ms(1)


def _backlog(store: Store, member: str, t1_ms: int) -> int:
    e = executions
    stmt = select(func.count()).where(
        e.c.member_uuid == member, e.c.fire_ms < t1_ms, e.c.status == "scheduled"
    )
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def run_rate(
    args: argparse.Namespace, rate: int, redis_url: str, db_url: str, home: Path
) -> Window:
    member = str(uuid.uuid4())
    store = Store(create_store_engine(db_url))
    _jobs(store, member, rate)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    env.update(
        QWC_REDIS_URL=redis_url,
        QWC_DATABASE_URL=db_url,
        QWC_HOME=str(home),
        QWC_REDIS_PREFIX=f"qwc-bench-{member[:8]}",  # its own keys, nothing flushed
        QWC_EXECUTIONS_THREADCOUNT=str(args.threads),
        QWC_EXECUTIONS_DRAINTIMEOUT="0",
    )
    log = (args.logs / f"node-{rate}.log") if args.logs else Path(os.devnull)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "workers.cli", "-v", "node", "--uuid", member]
    with log.open("ab") as out:
        node = subprocess.Popen([*argv, "--name", f"bench-{rate}"], env=env, stdout=out, stderr=out)
    try:
        time.sleep(args.warmup)
        proc = psutil.Process(node.pid)
        t0_ms = (time.time_ns() // 1_000_000 // 1000 + 1) * 1000
        time.sleep(max(0.0, t0_ms / 1000 - time.time()))
        cpu0, machine0 = proc.cpu_times(), _busy_s()
        wall0 = time.monotonic()
        t1_ms = t0_ms + args.seconds * 1000
        time.sleep(max(0.0, t1_ms / 1000 - time.time()))
        cpu1, machine1 = proc.cpu_times(), _busy_s()
        wall = time.monotonic() - wall0
        backlog = _backlog(store, member, t1_ms)
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait()
    fired, skipped, started, lateness, claimed = _measure(store, member, t0_ms, t1_ms)
    store.close()
    return Window(
        rate=rate,
        seconds=args.seconds,
        fired=fired,
        skipped=skipped,
        started=started,
        lateness_ms=lateness + [sys.maxsize] * (fired - skipped - len(lateness)),
        claimed_ms=claimed,
        backlog=backlog,
        node_cpu=(cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall,
        commands_cpu=(
            cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system
        )
        / wall,
        machine_cpu=(machine1 - machine0) / wall,
    )


def _busy_s() -> float:
    """CPU time every core of the machine spent on anything but waiting (s, summed)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _q(sorted_ms: list[int], q: float) -> str:
    if not sorted_ms:
        return "-"
    value = sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]
    return "not started" if value == sys.maxsize else str(value)


def _sq(sorted_ms: list[int], q: float) -> str:
    """:func:`_q` with its sign: a fire claimed ahead of its time is at -N ms."""
    value = _q(sorted_ms, q)
    return value if not value.lstrip("-").isdigit() else f"{int(value):+d}"


def report(w: Window) -> None:
    p99 = _q(w.lateness_ms, 0.99)
    ok = p99.isdigit() and int(p99) < TARGET_P99_MS and w.backlog == 0
    print(f"-- {w.rate} jobs every second, {w.seconds:.0f} s measured")
    print(f"   fires claimed        : {w.fired / w.seconds:8.1f} /s")
    print(f"   executions started   : {w.started / w.seconds:8.1f} /s")
    print(f"   skipped (forbid)     : {w.skipped} (the job's previous run not ended yet)")
    print(
        f"   start lateness       : p50 {_q(w.lateness_ms, 0.5)} / p99 {p99} / max "
        f"{_q(w.lateness_ms, 1.0)} ms  (target p99 < {TARGET_P99_MS}: "
        f"{'ok' if ok else 'not met'})"
    )
    print(
        f"   path p50/p99 (ms)    : claim pass {_sq(w.claimed_ms, 0.5)}/{_sq(w.claimed_ms, 0.99)},"
        f" started {_sq(w.lateness_ms, 0.5)}/{_sq(w.lateness_ms, 0.99)}"
    )
    print(f"   backlog at the end   : {w.backlog} fired, not started")
    cpu = f"{w.node_cpu:.2f} of one core (its commands: {w.commands_cpu:.2f})"
    print(f"   node CPU             : {cpu}")
    if w.started:
        per_ms = {k: v * w.seconds * 1000 / w.started for k, v in (
            ("machine", w.machine_cpu), ("node", w.node_cpu), ("commands", w.commands_cpu)
        )}  # fmt: skip
        rest_ms = per_ms["machine"] - per_ms["node"] - per_ms["commands"]
        cores = os.cpu_count() or 1
        print(
            f"   CPU per execution    : {per_ms['machine']:.2f} ms of the machine (node "
            f"{per_ms['node']:.2f}, its commands {per_ms['commands']:.2f}, store, Redis "
            f"and the rest {rest_ms:.2f})"
        )
        print(
            f"   one second's burst   : {w.rate * per_ms['node']:.0f} ms of the node's CPU "
            f"(one interpreter: its threads take turns), "
            f"{w.rate * per_ms['machine'] / cores:.0f} ms of all {cores} cores"
        )


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="qwc-bench-exec-") as tmp:
        home = Path(tmp)
        redis_url = args.redis_url or EmbeddedRedis(home).ensure()
        try:
            print(
                f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
                f"Redis {redis_version(redis_url)} ({args.redis_url or 'embedded'}); "
                f"store {'SQLite (fresh per rate)' if args.database_url is None else 'given URL'}"
            )
            rate, cost_ms = floor(args.threads)
            print(
                f"floor: `true` spawned by {args.threads} threads: {rate:,.0f} /s "
                f"({cost_ms:.2f} ms of the machine's CPU each)"
            )
            for rate in [int(r) for r in args.rates.split(",") if r]:
                db_url = _migrated(args.database_url or f"sqlite:///{home / f'rate-{rate}.db'}")
                report(run_rate(args, rate, redis_url, db_url, home))
            if args.candidates > 0:
                db_url = _migrated(args.database_url or f"sqlite:///{home / 'candidates.db'}")
                executions_candidates.run(db_url, redis_url, args.candidates, args.threads)
        finally:
            if args.redis_url is None:
                EmbeddedRedis(home).stop()
    return 0


def _migrated(db_url: str) -> str:
    engine = create_store_engine(db_url)
    upgrade(engine)
    engine.dispose()
    return db_url
