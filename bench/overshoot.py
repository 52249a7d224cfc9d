"""Autotakeover overshoot: how late a dead member's takeover commits, over N takeovers.

overshoot = decided - (last heartbeat + considerDead + autotakeover.delay), Redis server ms:
``decided`` is the ``decided_ms`` of the committed ``takeovers`` row, the last heartbeat the
dead member's ``view:seen`` score (checked against the proposal's ``last_seen_ms``). Target:
p99 < 200 ms. "commit end": the server time right after ``commit_takeover`` returned.

Real components, in threads of this process: a LivenessWorker, a TakeoverWorker, live
members heartbeating all along (HeartbeatProducer), and one more member at a time that
heartbeats, gets 20 jobs and is stopped; the next starts once its takeover committed, so
one member at most is silent. Where the time goes: "death detected late" = the membership
change's time (the proposal's ``proposed_at``) - (last heartbeat + considerDead);
"takeover woke late" = decided - due (due = proposed_at + delay); "commit" = commit end -
decided; "process stall" = the worst lateness of a 10 ms sleep in this process meanwhile.
A takeover the mass-failure guard held first (a stall of this process or of Redis silenced
the live members) is counted, and the target is also given without those.

Redis: an embedded server in a temp dir (stopped at the end), or ``--redis-url`` under a
unique key prefix (its keys deleted at the end). Store: SQLite in the temp dir, or for a
PostgreSQL ``--database-url`` a scratch database ``qwc_bench_<hex>`` created on that server
(through the ``postgres`` database) and dropped at the end; the named database is untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from producers.heartbeat import HeartbeatProducer
from schemas.codec import decode_as
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import MembershipChange, MemberState, TakeoverProposal
from schemas.settings import Settings
from workers.bus.connect import connect
from workers.bus.embedded import EmbeddedRedis
from workers.bus.streams import Entry, server_time_ms
from workers.liveness.worker import LivenessWorker
from workers.store import (
    Store,
    TakeoverCommit,
    count_jobs_by_owner,
    create_job,
    create_store_engine,
    list_takeovers,
    masked_url,
    upgrade,
)
from workers.takeover import worker as takeover_worker
from workers.takeover.worker import TakeoverWorker

__all__ = ["Sample", "add_parser", "percentile", "run", "scratch_database"]

TARGET_P99_MS = 200
INTERVAL_S, INACTIVE_S, DEAD_S = 0.1, 0.3, 0.6
WAIT_S = 10.0  # a takeover (or a member turning active) later than this is a failure
POLL_S = 0.005


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "overshoot",
        help=__doc__.splitlines()[0],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--takeovers", type=int, default=50)
    p.add_argument("--jobs", type=int, default=20, help="jobs owned by each dying member")
    p.add_argument("--live", type=int, default=5, help="members heartbeating all along")
    p.add_argument("--delay-s", type=float, default=0.2, help="autotakeover.delay")
    p.add_argument("--redis-url", default=None, help="default: an embedded server in a temp dir")
    p.add_argument(
        "--database-url",
        default=None,
        help="default: SQLite in a temp dir. PostgreSQL: a scratch database is created on "
        "that server and dropped at the end",
    )
    p.add_argument("--verbose", action="store_true", help="print every takeover")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Sample:
    """One committed takeover, Redis server ms."""

    dead_uuid: str
    last_seen_ms: int  # view:seen score of the dead member
    proposal_last_seen_ms: int  # what the proposal carried
    dead_at_ms: int  # last seen + considerDead
    expected_ms: int  # last seen + considerDead + delay
    proposed_ms: int
    due_ms: int
    decided_ms: int
    commit_end_ms: int
    jobs_moved: int
    jobs_left: int  # still owned by the dead member after the commit (must be 0)
    held: bool  # the mass-failure guard held it first
    stall_ms: int  # worst lateness of a 10 ms sleep in this process meanwhile

    def parts(self) -> dict[str, int]:
        return {
            "overshoot (decided)": self.decided_ms - self.expected_ms,
            "overshoot (commit end)": self.commit_end_ms - self.expected_ms,
            "  death detected late": self.proposed_ms - self.dead_at_ms,
            "  takeover woke late": self.decided_ms - self.due_ms,
            "  commit": self.commit_end_ms - self.decided_ms,
            "process stall": self.stall_ms,
        }


class _Audit:
    """Wraps the takeover worker's ``commit_takeover`` and ``record_takeover_outcome`` (the
    real ones run) to note, per dead member, the server ms right after its commit returned
    and the other outcomes recorded (held, cancelled, ...)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.ends: dict[str, int] = {}
        self.outcomes: dict[str, list[str]] = {}
        self.cond = threading.Condition()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Replace the two functions in ``workers.takeover.worker`` while inside."""
        names = vars(takeover_worker)
        real_commit, real_record = names["commit_takeover"], names["record_takeover_outcome"]

        def commit(*args: Any, **kwargs: Any) -> TakeoverCommit:
            result: TakeoverCommit = real_commit(*args, **kwargs)
            if result.committed:
                self._note(kwargs["dead_uuid"], "committed", server_time_ms(self.client))
            return result

        def record(*args: Any, **kwargs: Any) -> bool:
            done: bool = real_record(*args, **kwargs)
            self._note(kwargs["dead_uuid"], kwargs["outcome"], None)
            return done

        names["commit_takeover"], names["record_takeover_outcome"] = commit, record
        try:
            yield
        finally:
            names["commit_takeover"], names["record_takeover_outcome"] = real_commit, real_record

    def _note(self, dead_uuid: str, outcome: str, end_ms: int | None) -> None:
        with self.cond:
            self.outcomes.setdefault(dead_uuid, []).append(outcome)
            if end_ms is not None:
                self.ends[dead_uuid] = end_ms
            self.cond.notify_all()

    def wait(self, dead_uuid: str, alive: Callable[[], None]) -> int:
        """The commit end of ``dead_uuid``'s takeover; TimeoutError when it does not come."""
        deadline = time.monotonic() + WAIT_S
        with self.cond:
            while dead_uuid not in self.ends:
                alive()
                final = {"cancelled", "skipped"} & set(self.outcomes.get(dead_uuid, []))
                if final or time.monotonic() > deadline:
                    why = final or f"no commit within {WAIT_S} s"
                    raise TimeoutError(f"member {dead_uuid}: takeover {why}")
                self.cond.wait(0.2)
            return self.ends[dead_uuid]


class _StallMeter:
    """A thread sleeping 10 ms at a time; ``take()`` gives its worst lateness (ms) since the
    previous call: how long this process went without being scheduled (GIL, CPU)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.worst_s = 0.0
        self.thread = threading.Thread(target=self._run, name="stall-meter", daemon=True)

    def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            if self.stop.wait(0.01):
                return
            self.worst_s = max(self.worst_s, time.monotonic() - t0 - 0.01)

    def take(self) -> int:
        worst, self.worst_s = self.worst_s, 0.0
        return round(worst * 1000)


class _Cluster:
    """The workers and the live members, in threads; ``kill_one()`` measures one takeover."""

    def __init__(self, settings: Settings, store: Store, args: argparse.Namespace) -> None:
        self.settings, self.store, self.jobs = settings, store, args.jobs
        self.keys = Keys(settings.redis_prefix)
        self.redis = connect(settings)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.audit = _Audit(self.redis)
        self.stalls = _StallMeter(self.stop)
        self.threads: list[threading.Thread] = []
        self.live = [self._member(f"live-{i}") for i in range(args.live)]
        self.rng = random.Random(1)

    def _member(self, name: str) -> HeartbeatProducer:
        return HeartbeatProducer(
            self.redis, uuid=str(uuid.uuid4()), name=name, interval_s=INTERVAL_S, keys=self.keys
        )

    def start(self) -> None:
        for worker in (LivenessWorker, TakeoverWorker):
            w = worker(
                connect(self.settings), self.store, self.settings, consumer="bench", stop=self.stop
            )
            t = threading.Thread(target=self._run, args=(w,), name=worker.__name__, daemon=True)
            t.start()
            self.threads.append(t)
        self.stalls.thread.start()
        for m in self.live:
            m.start()
        for m in self.live:
            self._wait_active(m.uuid)

    def _run(self, worker: LivenessWorker | TakeoverWorker) -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported by alive() in the main thread
            self.errors.append(exc)

    def alive(self) -> None:
        """Raise when a worker thread died."""
        if self.errors:
            raise RuntimeError(f"a worker died: {self.errors[0]!r}") from self.errors[0]

    def _state(self, member_uuid: str) -> MemberState | None:
        raw = self.redis.hget(self.keys.view_state, member_uuid)
        return MemberState(raw.decode()) if isinstance(raw, bytes) else None

    def _wait_active(self, member_uuid: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while self._state(member_uuid) is not MemberState.ACTIVE:
            self.alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"member {member_uuid}: not active within {WAIT_S} s")
            time.sleep(POLL_S)

    def kill_one(self, i: int) -> Sample:
        """A member heartbeats, gets ``jobs`` jobs, is stopped; its takeover is measured.

        The jobs come after it is active: an owner the view never heard of would be
        declared dead at once (store members count as last seen at the view's start).
        """
        member = self._member(f"dying-{i}")
        member.start()
        self._wait_active(member.uuid)
        now_ms = server_time_ms(self.redis)
        for j in range(self.jobs):
            create_job(
                self.store,
                project="bench",
                group_name=f"m{i}",
                name=f"job-{j}",
                command=["true"],
                schedule=None,
                modified_by=member.uuid,
                now_ms=now_ms,
            )
        time.sleep(self.rng.uniform(0, INTERVAL_S))  # a random phase against the workers
        self.stalls.take()
        member.stop()
        try:
            commit_end_ms = self.audit.wait(member.uuid, self.alive)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {self._why(member.uuid)}") from None
        return self._sample(member.uuid, commit_end_ms)

    def _why(self, member_uuid: str) -> str:
        """What the view and the audit say of a member whose takeover did not come."""
        rows = list_takeovers(self.store, dead_uuid=member_uuid, limit=None)
        audit = [(r.outcome, r.detail) for r in rows] or "no takeovers row"
        entries = cast(list[Entry], self.redis.xrevrange(self.keys.membership, count=1000))
        changes = [decode_as(f[MESSAGE_FIELD], MembershipChange) for _, f in reversed(entries)]
        history = [
            f"{c.from_state}->{c.to_state} at {c.at_ms} seen {c.last_seen_ms} ({c.reason})"
            for c in changes
            if c.uuid == member_uuid
        ]
        return f"view state {self._state(member_uuid)}, audit {audit}, changes {history}"

    def _sample(self, dead_uuid: str, commit_end_ms: int) -> Sample:
        row = next(
            r
            for r in list_takeovers(self.store, dead_uuid=dead_uuid, limit=None)
            if r.outcome == "committed"
        )
        seen = self.redis.zscore(self.keys.view_seen, dead_uuid)
        assert row.decided_ms is not None and seen is not None
        s = self.settings
        dead_at_ms = int(seen) + round(s.heartbeat_consider_dead_s * 1000)
        return Sample(
            dead_uuid=dead_uuid,
            last_seen_ms=int(seen),
            proposal_last_seen_ms=self._proposal(row.proposal_id).last_seen_ms,
            dead_at_ms=dead_at_ms,
            expected_ms=dead_at_ms + round(s.autotakeover_delay_s * 1000),
            proposed_ms=row.proposed_ms,
            due_ms=row.due_ms,
            decided_ms=row.decided_ms,
            commit_end_ms=commit_end_ms,
            jobs_moved=row.jobs_moved,
            jobs_left=count_jobs_by_owner(self.store).get(dead_uuid, 0),
            held="held" in self.audit.outcomes.get(dead_uuid, []),
            stall_ms=self.stalls.take(),
        )

    def _proposal(self, proposal_id: str) -> TakeoverProposal:
        entries = cast(list[Entry], self.redis.xrevrange(self.keys.takeover, count=100))
        for _, fields in entries:
            p = decode_as(fields[MESSAGE_FIELD], TakeoverProposal)
            if p.id == proposal_id:
                return p
        raise LookupError(f"proposal {proposal_id} not on the takeover stream")

    def close(self) -> None:
        for m in self.live:
            m.stop()
        self.stop.set()
        for t in self.threads:
            t.join(5.0)
        self.redis.close()


def percentile(values: list[int], p: float) -> int:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(p / 100 * len(ranked)) - 1)]


def report(samples: list[Sample], verbose: bool) -> bool:
    """Print the figures; True when the p99 overshoot meets the target."""
    if verbose:
        for s in samples:
            flag = " HELD" if s.held else ""
            print("  " + " ".join(f"{k.strip()}={v}" for k, v in s.parts().items()) + flag)
    print(f"  {'ms':<26}{'p50':>7}{'p99':>7}{'max':>7}{'min':>7}")
    for k in samples[0].parts():
        v = [s.parts()[k] for s in samples]
        print(f"  {k:<26}" + "".join(f"{f:>7}" for f in _figures(v)))
    ok = _verdict("all takeovers", samples)
    held = [s for s in samples if s.held]
    if held:
        stalls = ", ".join(str(s.stall_ms) for s in held)
        print(f"  held by the mass-failure guard first: {len(held)} (process stalls: {stalls} ms)")
        _verdict("takeovers never held", [s for s in samples if not s.held])
    bad = [s for s in samples if s.jobs_left or s.jobs_moved != samples[0].jobs_moved]
    odd = [s for s in samples if s.proposal_last_seen_ms != s.last_seen_ms]
    print(
        f"  takeovers with jobs left behind: {len(bad)}; proposal/view last seen differ: {len(odd)}"
    )
    return ok


def _verdict(label: str, samples: list[Sample]) -> bool:
    if not samples:
        return False
    over = [s.parts()["overshoot (decided)"] for s in samples]
    p99 = percentile(over, 99)
    ok = p99 < TARGET_P99_MS
    print(
        f"  target p99 overshoot (decided) < {TARGET_P99_MS} ms, {label} ({len(samples)}): "
        f"{p99} ms, {'ok' if ok else 'MISSED'}"
    )
    return ok


def _figures(values: list[int]) -> tuple[int, int, int, int]:
    return percentile(values, 50), percentile(values, 99), max(values), min(values)


def _bench(args: argparse.Namespace, home: Path, database_url: str | None) -> bool:
    prefix = "qwc" if args.redis_url is None else f"qwcbench-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        heartbeat_interval_s=INTERVAL_S,
        heartbeat_delay_s=0,
        heartbeat_consider_inactive_s=INACTIVE_S,
        heartbeat_consider_dead_s=DEAD_S,
        autotakeover_enabled=True,
        autotakeover_delay_s=args.delay_s,
        autotakeover_sleep_s=60,
        redis_url=args.redis_url,
        redis_prefix=prefix,
        database_url=database_url,
        home_dir=home,
    )
    store = Store(create_store_engine(database_url or f"sqlite:///{home / 'qwc.db'}"))
    cluster: _Cluster | None = None
    try:
        upgrade(store.engine)
        cluster = _Cluster(settings, store, args)
        _header(cluster, store, args)
        with cluster.audit.installed():
            cluster.start()
            samples = [cluster.kill_one(i) for i in range(args.takeovers)]
        return report(samples, args.verbose)
    finally:
        if cluster is not None:
            cluster.close()
        store.close()
        _clean_redis(settings)


def _header(cluster: _Cluster, store: Store, args: argparse.Namespace) -> None:
    version = cluster.redis.info("server")["redis_version"]
    print(f"redis {version} at {args.redis_url or 'embedded'}; store {masked_url(store.url)}")
    print(
        f"  {args.takeovers} takeovers, one member at a time owning {args.jobs} jobs, "
        f"{args.live} live members; heartbeat {INTERVAL_S} s, considerInactive {INACTIVE_S} s, "
        f"considerDead {DEAD_S} s, delay {args.delay_s} s (p99: nearest rank)"
    )


def _clean_redis(settings: Settings) -> None:
    if settings.redis_url is None:
        EmbeddedRedis(settings.home_dir).stop()
        return
    r = connect(settings)
    try:
        keys = list(r.scan_iter(match=f"{{{settings.redis_prefix}}}:*", count=1000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


@contextlib.contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``url``, dropped on exit; yields its URL."""
    parsed = make_url(url)
    name = f"qwc_bench_{uuid.uuid4().hex[:12]}"
    admin = parsed.set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="qwc-bench-") as tmp:
        if args.database_url and make_url(args.database_url).get_backend_name() == "postgresql":
            with scratch_database(args.database_url) as url:
                _bench(args, Path(tmp), url)
        else:
            _bench(args, Path(tmp), args.database_url)
    return 0
