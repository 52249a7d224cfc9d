"""The consumer: takes executions off the member's RQ queue into its pool, only when a slot
is free, so what waits stays on the queue, in order, visible (``rq info``, ``qwc members``).

One thread. Each pass, when the pool has ``n`` free slots, it pops up to ``n`` job ids from
the head of the queue and deletes their RQ job hashes, in one Lua call (one round trip;
nothing but the id is used: the execution is in the store), starts them in one fenced
UPDATE (:func:`workers.store.start_executions`: only those still ``scheduled`` on this
member start; an execution aborted or moved meanwhile is dropped, logged) and hands each to
the pool (after ``on_started``: the member's ``execution.started`` events). It wakes when
the dispatcher queued something (:meth:`Consumer.wake`) or a slot became free while
executions may still wait on the queue (:meth:`Consumer.slot_freed`), and polls every
:data:`POLL_S` anyway.

The start path comes first: while executions may wait on the queue for a slot (the last
pop took as many as there were free slots, or the dispatcher queued more since), the
consumer is *busy* until it has handed over the last of them; the node's background
writers (the recorder, the event sender) hold their next batch until it is quiet again
(:meth:`Quiet.hold`), for at most
:data:`HOLD_S` — a burst of fires starts before its outcomes and events are written, and
they are written in fewer, larger batches.

While executions wait, a pass first waits up to :data:`GATHER_S` for :data:`GATHER_SHARE`
of the slots to be free: a pass costs a round trip to Redis and a statement whatever its
size, and a burst of fires starts sooner in fewer, bigger passes than in one pass per freed
slot. Slots whose execution has run for :data:`LONG_RUN_MS` already are not waited for
(they will hardly end within the gather): with most slots held by long jobs, a pass takes
what is free at once.

An execution popped but not started (the node died between the two) stays ``scheduled``
and queued in the store: the dispatcher's lost-job check queues it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.commands.core import Script
from rq.job import Job

from workers.bus.retry import run_forever
from workers.node.pool import ExecutionPool
from workers.store import StartedExecution, Store, start_executions

__all__ = [
    "GATHER_S",
    "GATHER_SHARE",
    "HOLD_S",
    "LONG_RUN_MS",
    "POLL_S",
    "Consumer",
    "Quiet",
    "pop_job_ids",
    "pop_script",
]

log = logging.getLogger(__name__)

POLL_S = 1.0
GATHER_S = 0.005  # while executions wait, how long a pass waits for GATHER_SHARE of the slots
GATHER_SHARE = 0.7  # of the slots; was half (more passes: more CPU; docs/operations.md Sizing)
LONG_RUN_MS = 100  # a slot running one execution this long is not waited for by a gather
HOLD_S = 0.25  # how long a background writer holds its batch, at most, while the start path is busy

# LPOP with a count, then delete the popped jobs' hashes: one round trip, atomic. RQ's
# queue is never on a Redis Cluster (see workers.bus.connect.rq_redis_url_for), so the
# job keys need not be declared.
_POP_SCRIPT = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if not ids then return {} end
for _, id in ipairs(ids) do redis.call('UNLINK', ARGV[2] .. id) end
return ids
"""


def pop_script(client: redis.Redis) -> Script:
    """The script :func:`pop_job_ids` runs, registered on ``client`` (register it once:
    registering hashes its text)."""
    return client.register_script(_POP_SCRIPT)


def pop_job_ids(script: Script, queue_key: str, count: int) -> list[str]:
    """Pop up to ``count`` job ids from the head of the RQ queue ``queue_key`` and delete
    their job hashes (``script``: :func:`pop_script`); returns them in queue order. Redis
    errors propagate."""
    if count < 1:
        return []
    ids = script(keys=[queue_key], args=[count, Job.redis_job_namespace_prefix])
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


class Quiet(threading.Event):
    """Set while no execution waits on the member's queue for a slot, as far as its
    consumer knows (module docstring); made before the consumer, so that the writers that
    hold for it can be made first."""

    def __init__(self) -> None:
        super().__init__()
        self.set()

    def hold(self, timeout_s: float = HOLD_S) -> bool:
        """Wait until it is quiet, at most ``timeout_s``; True when it is."""
        return self.wait(timeout_s)


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
        gather_s: float = GATHER_S,
        on_started: Callable[[list[StartedExecution]], object] = lambda started: None,
        quiet: Quiet | None = None,
    ) -> None:
        self.client = client
        self._pop = pop_script(client)
        self.queue_key = queue_key
        self.store = store
        self.pool = pool
        self.member_uuid = member_uuid
        self.stop = stop
        self._clock_ms = clock_ms
        self._poll_s = poll_s
        self._gather_s = gather_s
        self._on_started = on_started
        self._wake = threading.Event()
        self.quiet = quiet or Quiet()

    def wake(self) -> None:
        """Something was queued: look at once (busy until the queue is seen empty)."""
        self.quiet.clear()
        self._wake.set()

    def slot_freed(self) -> None:
        """A slot became free: look at once if executions may wait on the queue (an empty
        queue was seen since the last :meth:`wake`: nothing to pop, no round trip)."""
        if not self.quiet.is_set():
            self._wake.set()

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
        if self.stop.is_set():
            self.quiet.set()  # nothing more starts: the writers need not hold
            return 0
        free = self.pool.free_slots()
        batch = max(1, round(self.pool.slots * GATHER_SHARE))
        if 0 < free < batch and not self.quiet.is_set():  # more wait: a bigger round
            long_runs = self.pool.started_by(self._clock_ms() - LONG_RUN_MS)
            target = min(batch, self.pool.slots - long_runs)
            if free < target:
                free = self.pool.wait_free(target, self._gather_s)
        if free == 0:
            return 0
        ids = pop_job_ids(self._pop, self.queue_key, free)
        emptied = len(ids) < free  # the queue is empty: quiet once these are handed over
        if not ids:
            self.quiet.set()
            return 0
        self.pool.expect(ids)  # held from now on: an abort before the hand-over is kept
        started: list[StartedExecution] = []
        handed: set[str] = set()
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
                handed.add(execution.id)
        finally:
            self.pool.forget(set(ids) - handed)
            if emptied:  # not before: a writer's transaction would hold up this start
                self.quiet.set()
        skipped = set(ids) - {e.id for e in started}
        if skipped:
            log.info(
                "member %s: not scheduled here any more, not run: %s",
                self.member_uuid,
                ", ".join(sorted(skipped)),
            )
        if len(ids) == free:
            self.quiet.clear()  # there may be more
            self._wake.set()
        return len(ids)
