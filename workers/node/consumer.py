"""The consumer: takes executions off the member's RQ queue into its pool, only when a slot
is free, so what waits stays on the queue, in order, visible (``rq info``, ``qwc members``).

One thread. Each pass, when the pool has ``n`` free slots, it pops up to ``n`` job ids from
the head of the queue and deletes their RQ job hashes, in one Lua call (one round trip;
nothing but the id is used: the execution is in the store), starts them in one fenced
UPDATE (:func:`workers.store.start_executions`: only those still ``scheduled`` on this
member start; an execution aborted or moved meanwhile is dropped, logged) and hands each to
the pool (after ``on_started``: the member's ``execution.started`` events). It wakes when
the dispatcher queued something or a slot became free (:meth:`Consumer.wake`), and polls
every :data:`POLL_S` anyway.

An execution popped but not started (the node died between the two) stays ``scheduled``
and queued in the store: the dispatcher's lost-job check queues it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from rq.job import Job

from workers.bus.retry import run_forever
from workers.node.pool import ExecutionPool
from workers.store import StartedExecution, Store, start_executions

__all__ = ["POLL_S", "Consumer", "pop_job_ids"]

log = logging.getLogger(__name__)

POLL_S = 1.0

# LPOP with a count, then delete the popped jobs' hashes: one round trip, atomic. RQ's
# queue is never on a Redis Cluster (see workers.bus.connect.rq_redis_url_for), so the
# job keys need not be declared.
_POP_SCRIPT = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if not ids then return {} end
for _, id in ipairs(ids) do redis.call('UNLINK', ARGV[2] .. id) end
return ids
"""


def pop_job_ids(client: redis.Redis, queue_key: str, count: int) -> list[str]:
    """Pop up to ``count`` job ids from the head of the RQ queue ``queue_key`` and delete
    their job hashes; returns them in queue order. Redis errors propagate."""
    if count < 1:
        return []
    ids = client.register_script(_POP_SCRIPT)(
        keys=[queue_key], args=[count, Job.redis_job_namespace_prefix]
    )
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


class Consumer:
    """Feeds ``pool`` from the RQ queue ``queue_key`` (module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        queue_key: str,
        store: Store,
        pool: ExecutionPool,
        *,
        member_uuid: str,
        stop: threading.Event,
        clock_ms: Callable[[], int],
        poll_s: float = POLL_S,
        on_started: Callable[[list[StartedExecution]], object] = lambda started: None,
    ) -> None:
        self.client = client
        self.queue_key = queue_key
        self.store = store
        self.pool = pool
        self.member_uuid = member_uuid
        self.stop = stop
        self._clock_ms = clock_ms
        self._poll_s = poll_s
        self._on_started = on_started
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: frozenset[str] = frozenset()

    def wake(self) -> None:
        """Something was queued, or a slot became free: look at once."""
        self._wake.set()

    @property
    def in_flight(self) -> frozenset[str]:
        """Ids popped and not handed to the pool yet (the lost-job check skips them)."""
        with self._lock:
            return self._in_flight

    def run(self) -> None:
        """Run passes until ``stop`` is set; transient errors are logged and retried."""
        what = f"member {self.member_uuid}: consumer"
        run_forever(self._wait_and_step, stop=self.stop, what=what, logger=log)

    def _wait_and_step(self) -> None:
        if self.step() == 0:
            self._wake.wait(self._poll_s)

    def step(self) -> int:
        """One pass: pop as many as there are free slots, start them, hand them to the
        pool. Returns how many were popped (0: the queue was empty or no slot free)."""
        self._wake.clear()
        free = self.pool.free_slots()
        if free == 0 or self.stop.is_set():
            return 0
        ids = pop_job_ids(self.client, self.queue_key, free)
        if not ids:
            return 0
        with self._lock:
            self._in_flight = frozenset(ids)
        try:
            started = start_executions(
                self.store, ids, member_uuid=self.member_uuid, now_ms=self._clock_ms()
            )
            try:  # told first: its execution.started is queued before its end can be
                self._on_started(started)
            except Exception:
                log.exception("member %s: started; telling it failed", self.member_uuid)
            for execution in started:
                self.pool.submit(execution)
        finally:
            with self._lock:
                self._in_flight = frozenset()
        skipped = set(ids) - {e.id for e in started}
        if skipped:
            log.info(
                "member %s: not scheduled here any more, not run: %s",
                self.member_uuid,
                ", ".join(sorted(skipped)),
            )
        if len(ids) == free:
            self._wake.set()  # there may be more
        return len(ids)
