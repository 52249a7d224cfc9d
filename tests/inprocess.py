"""Helpers of the in-process worker tests (real Redis, real store, no processes).

``View`` sets members in the liveness view by hand, through the view's own functions
(heartbeats recorded with ``queue_observe``, states compare-and-set with
``apply_transitions``, which also appends the membership change), so a test decides
exactly who is active, passive or dead. ``Threads`` runs workers in threads until the test
ends and stops them without waiting out a blocking read. ``step_until`` drives one worker
step by step in the test's thread. ``qwc`` runs the CLI in-process (click's runner) on the
test's Redis and database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
from click.testing import CliRunner, Result

from schemas.codec import encode
from schemas.keys import Keys
from schemas.messages import Heartbeat, MemberState
from schemas.settings import Settings
from tests.cluster import wait_for
from tests.fixtures_cli import json_of
from workers.bus.connect import connect
from workers.bus.streams import server_time_ms
from workers.cli.main import cli
from workers.liveness import view
from workers.liveness.rules import Transition
from workers.store import Store, create_job, list_jobs

__all__ = [
    "WORKER_CLIENT_NAME",
    "Qwc",
    "Steps",
    "Threads",
    "View",
    "create_jobs",
    "invoke",
    "owners",
    "qwc",
    "redelivered_and_acked",
    "step_until",
    "threads",
    "worker_client",
    "worker_settings",
]

KEYS = Keys()
WORKER_CLIENT_NAME = "qwc-test-worker"


class View:
    """Members in the liveness view, set by hand through the view's own functions."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def beat(self, uuid: str, *, passive: bool = False, running: tuple[str, ...] = ()) -> None:
        """A heartbeat now; the member is active."""
        now_ms = server_time_ms(self.r)
        hb = Heartbeat(
            uuid=uuid,
            name=uuid[:8],
            seq=1,
            started_at_ms=0,
            sent_at_ms=now_ms,
            passive=passive,
            running=running,
        )
        pipe = self.r.pipeline(transaction=False)
        view.queue_observe(pipe, KEYS, [(now_ms, hb, encode(hb))])
        pipe.execute()
        self.to(uuid, MemberState.ACTIVE)

    def die(self, uuid: str) -> None:
        """The member turns dead (the membership change is emitted)."""
        self.to(uuid, MemberState.DEAD)

    def to(self, uuid: str, state: MemberState) -> None:
        """The member turns ``state`` (nothing happens when it is in that state already)."""
        snap = view.read_snapshot(self.r, KEYS)
        before = snap.states.get(uuid)
        if before is state:
            return
        t = Transition(uuid, before, state, snap.seen_ms.get(uuid))
        applied = view.apply_transitions(
            self.r, KEYS, [t], now_ms=server_time_ms(self.r), names={}, reason="test"
        )
        assert len(applied) == 1


def worker_settings(redis_url: str, home: Path, **overrides: Any) -> Settings:
    """Settings of a worker under test: heartbeats every 0.1 s, inactive after 0.5 s, dead
    after 1 s; ``overrides`` add the feature's own (e.g. ``autotakeover_delay_s``)."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "home_dir": home,
        "heartbeat_interval_s": 0.1,
        "heartbeat_delay_s": 0,
        "heartbeat_consider_inactive_s": 0.5,
        "heartbeat_consider_dead_s": 1.0,
    }
    return Settings(**(values | overrides))


def create_jobs(
    store: Store,
    owner: str,
    n: int,
    prefix: str = "job",
    *,
    schedule: str | None = None,
    concurrency: str = "forbid",
) -> list[str]:
    """``n`` jobs ``p/g/<prefix>-<i>`` owned by ``owner`` (concurrency policy as given);
    their ids."""
    now_ms = time.time_ns() // 1_000_000
    return [
        create_job(
            store,
            project="p",
            group_name="g",
            name=f"{prefix}-{i}",
            command=["true"],
            schedule=schedule,
            modified_by=owner,
            now_ms=now_ms,
            concurrency=concurrency,
        ).id
        for i in range(n)
    ]


def owners(store: Store) -> dict[str, str]:
    """Job id -> owner uuid, of every job."""
    return {j.id: j.owner_uuid for j in list_jobs(store)}


def redelivered_and_acked(r: redis.Redis, stream: str, group: str) -> bool:
    """True once ``group`` read ``stream`` again from the start (``XGROUP SETID 0``) and
    acknowledged everything."""
    (info,) = r.xinfo_groups(stream)
    pending = int(r.xpending(stream, group)["pending"])
    return bool(info["last-delivered-id"] != b"0-0") and pending == 0


class Steps(Protocol):
    """A worker: ``run()`` until its stop event is set; ``step()`` once."""

    def run(self) -> None: ...

    def step(self) -> None: ...


def worker_client(redis_url: str) -> redis.Redis:
    """A client of its own for a worker under test (named so ``Threads`` can unblock it)."""
    return connect(redis_url, client_name=WORKER_CLIENT_NAME)


class Threads:
    """Workers running in threads until the test ends; ``close`` stops them all.

    Every worker shares ``stop``. A worker blocked in XREADGROUP would only see it when the
    read times out (up to 2 s), so ``close`` also sends CLIENT UNBLOCK to the blocked
    clients named ``WORKER_CLIENT_NAME`` on the test's database."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, worker: Steps) -> Steps:
        t = threading.Thread(target=self._run, args=(worker,), daemon=True)
        t.start()
        self.threads.append(t)
        return worker

    def _run(self, worker: Steps) -> None:
        try:
            worker.run()
        except BaseException as exc:
            self.errors.append(exc)
            raise

    def close(self, timeout_s: float = 5.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            while t.is_alive() and time.monotonic() < deadline:
                self._unblock()
                t.join(0.05)
            assert not t.is_alive(), "a worker did not stop"
        assert not self.errors, self.errors

    def _unblock(self) -> None:
        db = str(self.r.connection_pool.connection_kwargs.get("db", 0))
        for c in self.r.client_list():
            if c.get("name") == WORKER_CLIENT_NAME and c.get("db") == db and "b" in c["flags"]:
                self.r.client_unblock(c["id"])


def step_until(worker: Steps, condition: Callable[[], object], what: str) -> object:
    """Step ``worker`` in this thread until ``condition`` holds; its value."""

    def stepped() -> object:
        worker.step()
        return condition()

    return wait_for(stepped, what=what)


@pytest.fixture
def threads(r: redis.Redis) -> Iterator[Threads]:
    """Workers in threads (``threads.start(worker)``), stopped when the test ends; a worker
    made for it takes ``stop=threads.stop`` and a ``worker_client``."""
    running = Threads(r)
    yield running
    running.close()


def invoke(env: dict[str, str], *args: str) -> Result:
    """``qwc <args>`` in-process with ``env`` added to the environment; fails the test when
    anything but SystemExit ends the command (a user would see a traceback)."""
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


class Qwc:
    """The ``qwc`` CLI on the test's Redis and database: ``qwc(*args)`` returns the result,
    ``qwc.json(*args)`` the JSON of a command that must exit 0; ``env`` can take more."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str) -> Result:
        return invoke(self.env, *args)

    def json(self, *args: str) -> Any:
        return json_of(self(*args, "--json"))


@pytest.fixture
def qwc(redis_url: str, db_url: str, isolated_settings: None, tmp_path: Path) -> Qwc:
    """The CLI on ``redis_url`` and ``db_url`` (migrated by the ``store`` fixture), without
    the caller's QWC_* variables, in a working directory without a config file.

    ``isolated_settings`` comes after ``redis_url`` and ``db_url``: it removes QWC_TEST_*
    too."""
    home = str(tmp_path / "home")
    return Qwc({"QWC_REDIS_URL": redis_url, "QWC_DATABASE_URL": db_url, "QWC_HOME": home})
