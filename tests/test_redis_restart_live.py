"""Every worker survives Redis restarts: a liveness, two takeover and a recovery worker, the
manager and three members run on a private ``redis-server`` (a free loopback port, the
test's own) that is restarted with its data, then empty (groups, streams and view gone).
No process exits; the consumer groups come back by themselves; the manager answers from
the new server; a member SIGKILLed afterwards is taken over exactly once."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from schemas.keys import (
    GROUP_COMMANDS,
    GROUP_LIVENESS,
    GROUP_RECOVERY,
    GROUP_TAKEOVER,
    Keys,
)
from tests import test_manager_process as manager
from tests.cluster import Cluster, wait_for
from tests.redis_topologies import answers, free_ports, redis_server_binary
from tests.test_manager_api import closed_port
from tests.test_recovery_live import RECOVERY_ENV
from tests.test_takeover_live import TAKEOVER_ENV, add_jobs, owners, takeovers
from workers.liveness.view import read_snapshot
from workers.liveness.worker import GROUP_MEMBERS_STORE
from workers.store import Store, create_store_engine, list_recoveries, upgrade

pytestmark = pytest.mark.processes

KEYS = Keys()


class RestartableRedis:
    """A ``redis-server`` on a loopback port that a test may restart, keeping its data
    (``SHUTDOWN SAVE``, then the RDB file is loaded) or empty (SIGKILL, file removed)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        with open(self.dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [redis_server_binary(), *args, "--appendonly", "no", "--dir", str(self.dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: answers(self.port), timeout_s=10, what="private redis up")

    def restart_with_data(self) -> None:
        client = redis.Redis.from_url(self.url)
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection
            client.shutdown(save=True)
        assert self.proc is not None
        self.proc.wait(10)
        self.start()

    def restart_empty(self) -> None:
        self.kill()
        (self.dir / "dump.rdb").unlink(missing_ok=True)
        self.start()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[tuple[Cluster, RestartableRedis]]:
    server = RestartableRedis(tmp_path / "redis")
    server.start()
    db_url = f"sqlite:///{tmp_path / 'qwc.db'}"
    engine = create_store_engine(db_url)
    upgrade(engine)
    engine.dispose()
    c = Cluster(redis_url=server.url, database_url=db_url, home=tmp_path / "home")
    c.extra_env.update(TAKEOVER_ENV)
    c.extra_env.update(RECOVERY_ENV)
    c.extra_env["QWC_CLUSTERMODE_REMOTEEXEC_PROCESS_INTERVAL"] = "0.2"
    ok = False
    try:
        yield c, server
        ok = True
    finally:
        for p in c.procs:
            p.kill()
            p.wait(10)
        server.kill()
        if not ok:
            print(c.dump_logs())


def _groups(r: redis.Redis, stream: str) -> set[str]:
    """The consumer groups of ``stream`` (none without the stream)."""
    try:
        return {g["name"].decode() for g in r.xinfo_groups(stream)}
    except redis.ResponseError:
        return set()


def _groups_missing(r: redis.Redis, members: list[str]) -> list[tuple[str, str]]:
    """(stream, group) of every consumer group the workers and members read that is not
    there (yet). A reader whose idle connection redis-py silently reconnected may find its
    group recreated by a replica before it noticed the restart: that is fine."""
    wanted = [
        (KEYS.heartbeats, GROUP_LIVENESS),
        (KEYS.membership, GROUP_MEMBERS_STORE),
        (KEYS.membership, GROUP_TAKEOVER),
        (KEYS.membership, GROUP_RECOVERY),
        (KEYS.takeover, GROUP_TAKEOVER),
        (KEYS.recovery, GROUP_RECOVERY),
    ] + [(KEYS.commands(u), GROUP_COMMANDS) for u in members]
    return [(s, g) for s, g in wanted if g not in _groups(r, s)]


WORKERS = {"liveness": 1, "takeover": 2, "recovery": 1}


def _workers_connected(r: redis.Redis) -> dict[str, int]:
    """Worker processes connected to the server now, by kind (their client names)."""
    kinds = [str(c.get("name", "")).split("-")[0] for c in r.client_list()]
    return {k: kinds.count(k) for k in WORKERS}


def test_workers_survive_redis_restarts_and_a_later_death_is_taken_over_once(
    private: tuple[Cluster, RestartableRedis],
) -> None:
    c, server = private
    workers = [c.start("worker", "liveness")]
    workers += [c.start("worker", "takeover") for _ in range(2)]
    workers.append(c.start("worker", "recovery"))
    c.extra_env["QWC_MANAGER_TOKEN"] = manager.TOKEN
    port = closed_port()
    workers.append(c.start("manager", "--port", str(port)))
    nodes = [c.node(f"node-{i}") for i in range(3)]
    uuids = [u for u, _ in nodes]
    r = c.client()

    def all_active() -> bool:
        states = read_snapshot(r, KEYS).states
        return all(states.get(u) is not None and states[u].value == "active" for u in uuids)

    wait_for(all_active, timeout_s=30, what="members active")
    wait_for(lambda: not _groups_missing(r, uuids), timeout_s=20, what="every group read")

    server.restart_with_data()
    wait_for(lambda: _workers_connected(r) == WORKERS, timeout_s=20, what="workers reconnected")
    wait_for(all_active, timeout_s=20, what="members active after a restart with data")

    for _ in range(2):  # each time a reader may notice by another command first
        server.restart_empty()
        try:
            wait_for(lambda: not _groups_missing(r, uuids), timeout_s=20, what="groups back")
        except AssertionError:
            raise AssertionError(f"groups missing: {_groups_missing(r, uuids)}") from None
        wait_for(all_active, timeout_s=20, what="members active after an empty restart")
    assert [p.poll() for p in workers + [p for _, p in nodes]] == [None] * 8
    listed = wait_for(
        lambda: manager.answers(f"http://127.0.0.1:{port}/api/cluster/members"),
        what="the manager answering",
    )
    assert listed.status_code == 200 and {m["uuid"] for m in listed.json()} >= set(uuids)

    victim, victim_proc = nodes[0]
    jobs = add_jobs(c, victim, 4)
    victim_proc.kill()
    wait_for(lambda: all(o != victim for o in owners(c).values()), timeout_s=20, what="moved")
    committed = [t for t in takeovers(c) if t.outcome == "committed"]
    assert [(t.dead_uuid, t.jobs_moved) for t in committed] == [(victim, len(jobs))]
    store = Store(create_store_engine(c.database_url))
    try:
        wait_for(
            lambda: any(row.dead_uuid == victim for row in list_recoveries(store)),
            what="the recovery worker decided on the victim",
        )
    finally:
        store.close()
    assert [p.poll() for p in workers] == [None] * 5
