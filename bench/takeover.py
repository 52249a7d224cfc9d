"""Takeover commit time of a dead member's jobs beside a bare single UPDATE.

A dead member owns N jobs (default 100,000); ``commit_takeover`` moves them to three
destinations (audit row, one set-based UPDATE with epochs, pending executions, outcome).
The floor is a bare ``UPDATE scheduled_jobs SET owner_uuid = :to WHERE owner_uuid = :from``
on the same table in the same run; each side gets fresh data. Best of N rounds, on SQLite
(a temporary file) and on PostgreSQL. Target: commit / bare <= 1.5.

Two commits are timed: ``with_jobs=False`` (what the takeover worker does: counts per
destination, no row per job fetched) and ``with_jobs=True`` (also returns one MovedJob per
job, as the manual takeover's answer lists them).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from schemas.tables import executions, scheduled_jobs
from workers.store import Store, commit_takeover, create_store_engine, upgrade

DEAD = "dddddddd-0000-4000-8000-000000000000"
DESTINATIONS = [f"0000000{i}-0000-4000-8000-00000000000{i}" for i in (1, 2, 3)]
TARGET_RATIO = 1.5


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "takeover",
        help=__doc__.splitlines()[0],
        description=__doc__
        + "\nWARNING: on PostgreSQL the public schema of --database-url is DROPPED and "
        "re-created (every table in it is lost). Use a scratch database.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--jobs", type=int, default=100_000, help="jobs of the dead member")
    p.add_argument("--rounds", type=int, default=3, help="best of N rounds for each side")
    p.add_argument(
        "--database-url",
        default=os.environ.get("QWC_TEST_DATABASE_URL"),
        help="PostgreSQL URL (default: $QWC_TEST_DATABASE_URL; PostgreSQL is skipped when "
        "neither is set). ITS PUBLIC SCHEMA IS DROPPED AND RE-CREATED.",
    )
    p.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    p.set_defaults(run=run)


def _fill(store: Store, jobs: int) -> None:
    """Empty the tables and insert ``jobs`` jobs owned by DEAD, then refresh statistics."""
    rows = [
        {
            "id": str(uuid.uuid4()),
            "project": "bench",
            "group_name": "",
            "name": f"job-{i}",
            "command": ["true"],
            "schedule": "* * * * *",
            "enabled": True,
            "owner_uuid": DEAD,
            "owner_epoch": 1,
            "retry_count": 0,
            "retry_delay_s": 0.0,
            "modified_by": DEAD,
            "modified_ms": 0,
            "created_ms": 0,
        }
        for i in range(jobs)
    ]
    with store.begin() as conn:
        conn.execute(executions.delete())
        conn.execute(scheduled_jobs.delete())
        for start in range(0, jobs, 10_000):
            conn.execute(scheduled_jobs.insert(), rows[start : start + 10_000])
    _maintain(store)


def _maintain(store: Store) -> None:
    """Reclaim dead rows and refresh planner statistics, so every round starts alike."""
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("VACUUM ANALYZE scheduled_jobs"))
            conn.execute(text("VACUUM ANALYZE executions"))
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()


def _reset_postgres_schema(store: Store) -> None:
    """Drop and re-create the ``public`` schema (every table in it)."""
    with store.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


def _commit_timer(with_jobs: bool) -> Callable[[Store, int], float]:
    def timed(store: Store, jobs: int) -> float:
        return _time_commit(store, jobs, with_jobs)

    return timed


def _time_commit(store: Store, jobs: int, with_jobs: bool) -> float:
    share = jobs // len(DESTINATIONS)
    quotas = [(d, share) for d in DESTINATIONS[:-1]] + [(DESTINATIONS[-1], jobs - 2 * share)]
    t0 = time.perf_counter()
    result = commit_takeover(
        store,
        proposal_id=str(uuid.uuid4()),
        dead_uuid=DEAD,
        policy="any",
        proposed_ms=0,
        due_ms=0,
        now_ms=1,
        quotas=quotas,
        with_jobs=with_jobs,
    )
    elapsed = time.perf_counter() - t0
    assert result.destinations == dict(quotas), (result.destinations, quotas)
    assert len(result.moved) == (jobs if with_jobs else 0)
    return elapsed


def _time_bare(store: Store, jobs: int) -> float:
    stmt = text("UPDATE scheduled_jobs SET owner_uuid = :to WHERE owner_uuid = :from")
    t0 = time.perf_counter()
    with store.begin() as conn:
        moved = conn.execute(stmt, {"to": DESTINATIONS[0], "from": DEAD}).rowcount
    elapsed = time.perf_counter() - t0
    assert moved == jobs, (moved, jobs)
    return elapsed


def _best(store: Store, jobs: int, rounds: int, timed: Callable[[Store, int], float]) -> float:
    times = []
    for _ in range(rounds):
        _fill(store, jobs)
        times.append(timed(store, jobs))
    return min(times)


def _bench(label: str, url: str, args: argparse.Namespace) -> None:
    store = Store(create_store_engine(url))
    try:
        if store.dialect == "postgresql":
            _reset_postgres_schema(store)
        upgrade(store.engine)
        bare = _best(store, args.jobs, args.rounds, _time_bare)
        counts = _best(store, args.jobs, args.rounds, _commit_timer(False))
        listed = _best(store, args.jobs, args.rounds, _commit_timer(True))
    finally:
        store.close()
    print(f"{label}: {store.url}")
    print(f"  rows moved                     : {args.jobs:,} to {len(DESTINATIONS)} destinations")
    print(f"  bare UPDATE ... WHERE owner    : {bare * 1000:9.1f} ms (best of {args.rounds})")
    for name, took in (("with_jobs=False", counts), ("with_jobs=True ", listed)):
        ratio = took / bare
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        print(
            f"  commit_takeover {name}: {took * 1000:9.1f} ms  ratio {ratio:5.2f}"
            f"  (target <= {TARGET_RATIO}) {verdict}"
        )


def run(args: argparse.Namespace) -> int:
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="qwc-bench-") as tmp:
            _bench("sqlite", f"sqlite:///{Path(tmp) / 'qwc.db'}", args)
    if args.database_url:
        _bench("postgresql", args.database_url, args)
    else:
        print("postgresql: skipped (no --database-url and no QWC_TEST_DATABASE_URL)")
    return 0
