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

import json
import os
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
from tests.cluster import wait_for
from workers.bus.connect import connect
from workers.bus.streams import server_time_ms
from workers.cli.main import cli
from workers.liveness import view
from workers.liveness.rules import Transition

__all__ = [
    "WORKER_CLIENT_NAME",
    "Qwc",
    "Steps",
    "Threads",
    "View",
    "invoke",
    "qwc",
    "step_until",
    "threads",
    "worker_client",
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
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def qwc(redis_url: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Qwc:
    """The CLI in a working directory without a config file, without the caller's QWC_*
    settings, on ``redis_url`` and ``db_url`` (migrated by the ``store`` fixture)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("QWC_") and not name.startswith("QWC_TEST_"):
            monkeypatch.delenv(name)
    home = str(tmp_path / "home")
    return Qwc({"QWC_REDIS_URL": redis_url, "QWC_DATABASE_URL": db_url, "QWC_HOME": home})
