"""Helpers of the in-process worker tests (real Redis, real store, no processes).

``View`` sets members in the liveness view by hand, through the view's own functions
(heartbeats recorded with ``queue_observe``, states compare-and-set with
``apply_transitions``, which also appends the membership change), so a test decides
exactly who is active, passive or dead. ``Threads`` runs workers in threads until the test
ends and stops them without waiting out a blocking read. ``step_until`` drives one worker
step by step in the test's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import pytest
import redis

from schemas.codec import encode
from schemas.keys import Keys
from schemas.messages import Heartbeat, MemberState
from tests.cluster import wait_for
from workers.bus.connect import connect
from workers.bus.streams import server_time_ms
from workers.liveness import view
from workers.liveness.rules import Transition

__all__ = [
    "WORKER_CLIENT_NAME",
    "Steps",
    "Threads",
    "View",
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
