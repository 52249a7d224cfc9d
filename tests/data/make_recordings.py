"""Regenerate the recordings in tests/data/replay/ by running real ``qwc`` processes.

Usage (from the repository root; about a minute; overwrites the files)::

    .venv/bin/python tests/data/make_recordings.py            # every scenario
    .venv/bin/python tests/data/make_recordings.py paused     # one of them

Each scenario runs on a private embedded Redis and SQLite (nothing else is touched):
a liveness, a takeover and a recovery worker and three or four ``qwc node`` members,
with the fast timings of the tests (heartbeats every 0.2 s, considerInactive 0.6 s,
considerDead 1.2 s; autotakeover and recoverExecutions on, delay 0.5 s, sleep 4 s),
then ``qwc record --out tests/data/replay/<name>.qwcrec``. Member uuids are fixed per
scenario, names are ``node-1``… Scenarios:

- ``killed``: node-1 owns 6 jobs and runs a long execution (a job with 1 retry); it is
  SIGKILLed: inactive, dead, its jobs taken over by node-2 and node-3 (which own 1 job
  each), its execution marked incomplete and retried on another member.
- ``paused``: node-1 (6 jobs) is SIGSTOPped until its jobs are taken over, then SIGCONTed:
  it comes back active (and has lost its jobs).
- ``flapping``: node-1 is paused until the view says inactive, then resumed, four times;
  never dead, nothing proposed.
- ``mass_failure``: 3 of 4 members (2 jobs each) are SIGKILLed: the mass-failure guard
  holds the takeovers until ``qwc takeover release``, then the survivor gets every job.
- ``returns_in_sleep``: (delay 2.5 s) node-1 dies, comes back before its takeover is due
  (cancelled), dies again inside ``sleep`` (no second proposal), and after the attempt
  window a new proposal takes its jobs over; it comes back a second later.

The scenarios are also what tests/test_replay_live.py runs live (``SCENARIOS``).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from schemas.codec import decode_as  # noqa: E402
from schemas.keys import Keys  # noqa: E402
from schemas.messages import Heartbeat  # noqa: E402
from tests.cluster import Cluster, wait_for  # noqa: E402
from workers.liveness.view import read_snapshot  # noqa: E402
from workers.store import (  # noqa: E402
    Store,
    create_job,
    create_store_engine,
    insert_execution,
    list_jobs,
    list_recoveries,
    list_takeovers,
    upgrade,
)

OUT = Path(__file__).resolve().parent / "replay"
KEYS = Keys()
ENV = {
    "QWC_CLUSTERMODE_AUTOTAKEOVER_ENABLED": "true",
    "QWC_CLUSTERMODE_AUTOTAKEOVER_DELAY": "0.5",
    "QWC_CLUSTERMODE_AUTOTAKEOVER_SLEEP": "4",
    "QWC_CLUSTERMODE_RECOVEREXECUTIONS_ENABLED": "true",
    "QWC_CLUSTERMODE_RECOVEREXECUTIONS_DELAY": "0.5",
    "QWC_CLUSTERMODE_RECOVEREXECUTIONS_SLEEP": "4",
}


def member(scenario: int, i: int) -> str:
    """The fixed uuid of member ``i`` (1-based) of scenario number ``scenario``."""
    return f"{i:08x}-0000-4000-8000-{scenario:012x}"


@dataclass
class Scenario:
    """A live run: ``act`` does the scenario on a running cluster of ``members`` nodes."""

    name: str
    number: int
    members: int
    act: Callable[[Run], None]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """A running scenario: the cluster, its nodes (uuid -> process) and the store."""

    c: Cluster
    nodes: dict[str, object]
    uuids: list[str]

    def store(self) -> Store:
        return Store(create_store_engine(self.c.database_url))

    def state(self, uuid: str) -> str | None:
        s = read_snapshot(self.c.client(), KEYS).states.get(uuid)
        return None if s is None else s.value

    def pid(self, uuid: str) -> int:
        return int(self.nodes[uuid].pid)  # type: ignore[attr-defined]

    def jobs(
        self, owner: str, n: int, prefix: str, *, retry: int = 0, cmd: str = "true"
    ) -> list[str]:
        store = self.store()
        try:
            return [
                create_job(
                    store,
                    project="p",
                    group_name="g",
                    name=f"{prefix}-{k + 1}",
                    command=cmd.split(),
                    schedule=None,
                    modified_by=owner,
                    now_ms=time.time_ns() // 1_000_000,
                    retry_count=retry,
                    retry_delay_s=0.5 if retry else 0.0,
                ).id
                for k in range(n)
            ]
        finally:
            store.close()

    def owners(self) -> dict[str, str]:
        store = self.store()
        try:
            return {j.id: j.owner_uuid for j in list_jobs(store)}
        finally:
            store.close()

    def outcomes(self, kind: str) -> list[tuple[str, str | None]]:
        store = self.store()
        try:
            rows = list_takeovers(store) if kind == "takeover" else list_recoveries(store)
            return [(r.dead_uuid, r.outcome) for r in rows]
        finally:
            store.close()

    def run_long(self, on: str) -> str:
        """Start a long execution (a job with 1 retry) on ``on``; wait until it runs there."""
        (job,) = self.jobs(on, 1, "long", retry=1, cmd="sleep 60")
        store = self.store()
        now = time.time_ns() // 1_000_000
        try:
            eid = insert_execution(
                store, job_id=job, member_uuid=on, trigger="manual", fire_ms=now, now_ms=now
            )
        finally:
            store.close()
        wait_for(lambda: eid in self.running(on), timeout_s=20, what="long execution running")
        return eid

    def running(self, uuid: str) -> tuple[str, ...]:
        raw = read_snapshot(self.c.client(), KEYS).info.get(uuid)
        return decode_as(raw, Heartbeat).running if raw else ()

    def stop(self, uuid: str) -> None:
        os.kill(self.pid(uuid), signal.SIGSTOP)

    def cont(self, uuid: str) -> None:
        os.kill(self.pid(uuid), signal.SIGCONT)

    def kill(self, uuid: str) -> None:
        os.kill(self.pid(uuid), signal.SIGKILL)

    def until_state(self, uuid: str, state: str) -> None:
        wait_for(lambda: self.state(uuid) == state, timeout_s=20, what=f"{uuid} {state}")

    def until_outcome(self, kind: str, uuid: str, outcome: str) -> None:
        wait_for(
            lambda: (uuid, outcome) in self.outcomes(kind), timeout_s=30, what=f"{kind} {outcome}"
        )


def killed(run: Run) -> None:
    victim, *others = run.uuids
    run.jobs(victim, 6, "victim")
    for k, o in enumerate(others):
        run.jobs(o, 1, f"other{k + 1}")
    run.run_long(victim)
    run.kill(victim)
    run.until_outcome("takeover", victim, "committed")
    run.until_outcome("recovery", victim, "committed")


def paused(run: Run) -> None:
    victim = run.uuids[0]
    run.jobs(victim, 6, "victim")
    run.stop(victim)
    run.until_outcome("takeover", victim, "committed")
    run.cont(victim)
    run.until_state(victim, "active")


def flapping(run: Run) -> None:
    flapper = run.uuids[0]
    run.jobs(flapper, 2, "flapper")
    for _ in range(4):
        run.stop(flapper)
        run.until_state(flapper, "inactive")
        run.cont(flapper)
        run.until_state(flapper, "active")


def mass_failure(run: Run) -> None:
    *victims, survivor = run.uuids
    for k, u in enumerate(run.uuids):
        run.jobs(u, 2, f"m{k + 1}")
    for v in victims:
        run.kill(v)
    r = run.c.client()
    wait_for(lambda: r.hlen(KEYS.takeover_held) >= 1, timeout_s=20, what="held")
    for v in victims:
        run.until_state(v, "dead")
    run.c.run("takeover", "release")
    wait_for(lambda: set(run.owners().values()) == {survivor}, timeout_s=30, what="all moved")


def returns_in_sleep(run: Run) -> None:
    flapper = run.uuids[0]
    run.jobs(flapper, 2, "flapper")
    run.stop(flapper)
    run.until_state(flapper, "dead")
    run.cont(flapper)
    run.until_state(flapper, "active")
    run.until_outcome("takeover", flapper, "cancelled")
    run.stop(flapper)
    run.until_state(flapper, "dead")
    run.until_outcome("takeover", flapper, "committed")
    # it stays away a second more: the workers' attempt window ends within one heartbeat
    # interval of the replay's, so a return right at the commit could fall in between
    time.sleep(1.0)
    run.cont(flapper)
    run.until_state(flapper, "active")


SLOW_DELAY = {
    "QWC_CLUSTERMODE_AUTOTAKEOVER_DELAY": "2.5",
    "QWC_CLUSTERMODE_RECOVEREXECUTIONS_DELAY": "2.5",
}
SCENARIOS = {
    s.name: s
    for s in (
        Scenario("killed", 1, 3, killed),
        Scenario("paused", 2, 3, paused),
        Scenario("flapping", 3, 3, flapping),
        Scenario("mass_failure", 4, 4, mass_failure),
        Scenario("returns_in_sleep", 5, 3, returns_in_sleep, SLOW_DELAY),
    )
}


def run_scenario(c: Cluster, scenario: Scenario) -> Run:
    """Start the workers and the nodes of ``scenario`` on ``c``, wait until every member
    is active, and act it out."""
    c.extra_env.update(ENV)
    c.extra_env.update(scenario.env)
    for kind in ("liveness", "takeover", "recovery"):
        c.start("worker", kind)
    uuids = [member(scenario.number, i) for i in range(1, scenario.members + 1)]
    nodes: dict[str, object] = {}
    for i, u in enumerate(uuids, 1):
        nodes[u] = c.node(f"node-{i}", u)[1]
    run = Run(c, nodes, uuids)
    for u in uuids:
        run.until_state(u, "active")
    scenario.act(run)
    return run


def record(c: Cluster, out: Path) -> None:
    c.run("record", "--out", str(out))


def main(names: list[str]) -> int:
    from workers.bus.embedded import EmbeddedRedis

    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or list(SCENARIOS):
        with tempfile.TemporaryDirectory(prefix="qwc-recordings-") as tmp:
            home = Path(tmp)
            server = EmbeddedRedis(home / "redis")
            url = server.ensure()
            redis.Redis.from_url(url).flushdb()
            db_url = f"sqlite:///{home / 'qwc.db'}"
            engine = create_store_engine(db_url)
            upgrade(engine)
            engine.dispose()
            c = Cluster(redis_url=url, database_url=db_url, home=home / "home")
            try:
                run_scenario(c, SCENARIOS[name])
                record(c, OUT / f"{name}.qwcrec")
            except BaseException:
                print(c.dump_logs(), file=sys.stderr)
                raise
            finally:
                c.stop_all()
                server.stop()
        size = (OUT / f"{name}.qwcrec").stat().st_size
        print(f"{name}: {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
