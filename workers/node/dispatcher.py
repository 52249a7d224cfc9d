"""The dispatcher: puts a member's due executions on its RQ queue ``qwc-<member uuid>``.

One thread, so that a slow or unreachable Redis delays queueing only, never firing (the
member's loop fires through SQL alone). Each pass:

1. every execution assigned to the member that is ``scheduled``, due (``fire_ms``
   passed) and not queued yet (``queued_ms`` NULL) is queued — one RQ job per execution,
   job id = execution id, in one pipeline per chunk (RQ's ``Queue.prepare_data`` +
   ``Queue.enqueue_many``: the first chunk as big as the pool, so its slots start at once,
   then :data:`DISPATCH_CHUNK` at a time) — then marked queued in one statement
   per chunk, and the consumer is woken. Its own fires are queued at once (the loop wakes
   it); executions that other processes assign to it (retries, recoveries, takeovers,
   remote executions) are found by polling every heartbeat interval, or every
   :data:`DISPATCH_POLL_MS` if that is shorter, or at their fire time. A crash between
   the enqueue and the mark queues an execution twice: harmless, the start is fenced.
2. every :data:`REQUEUE_CHECK_MS`, the lost-job check: executions it queued more than
   :data:`REQUEUE_AFTER_MS` ago, still ``scheduled``, that are neither on the queue (one
   ``LRANGE`` of it) nor held by the pool or the consumer, lost their RQ job — writes a
   Redis failover dropped, or popped by a node that died before it started them. They are
   marked unqueued, so the next pass queues them again.

An RQ job carries only the execution id; its hash expires after :data:`RQ_JOB_TTL_S`
should nobody pop it. The job's function is :func:`not_for_rq_workers`: the member's pool
runs these executions, never an RQ worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence

from rq import Queue

from workers.bus.retry import run_forever
from workers.node.scheduler import split_due
from workers.store import (
    ExecutionRow,
    Store,
    list_queued_before,
    list_unqueued,
    mark_queued,
    unmark_queued,
)

__all__ = [
    "DISPATCH_CHUNK",
    "DISPATCH_POLL_MS",
    "REQUEUE_AFTER_MS",
    "REQUEUE_CHECK_MS",
    "RQ_JOB_TTL_S",
    "Dispatcher",
    "not_for_rq_workers",
    "queue_name",
]

log = logging.getLogger(__name__)

DISPATCH_POLL_MS = 1_000  # at most this long before an execution assigned by others is queued
REQUEUE_CHECK_MS = 5_000  # how often queued, unstarted executions are checked against RQ
REQUEUE_AFTER_MS = 5_000  # queued this long ago, not started, not on the queue: queue it again
DISPATCH_CHUNK = 50  # executions per pipeline: the first ones reach the queue sooner
RQ_JOB_TTL_S = 7 * 24 * 3600  # an RQ job hash nobody popped expires (the store keeps the rest)


def queue_name(member_uuid: str) -> str:
    """The RQ queue of a member: ``qwc-<member uuid>``."""
    return f"qwc-{member_uuid}"


def not_for_rq_workers(execution_id: str) -> None:
    """The function of a member's RQ jobs: an RQ worker must not run them (the member's
    pool does). Raises ``RuntimeError``."""
    raise RuntimeError(
        f"execution {execution_id}: run by its member's pool (qwc node), not by an RQ worker"
    )


_TASK = f"{__name__}.{not_for_rq_workers.__name__}"


class Dispatcher:
    """Queues the member's due executions (module docstring). ``held()`` names executions
    the pool or the consumer hold (never lost); ``on_queued()`` wakes the consumer;
    ``first_chunk``: how many a pass queues first (the pool's slots)."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        *,
        member_uuid: str,
        stop: threading.Event,
        clock_ms: Callable[[], int],
        held: Callable[[], Collection[str]] = frozenset,
        on_queued: Callable[[], object] = lambda: None,
        poll_ms: int = DISPATCH_POLL_MS,
        first_chunk: int = DISPATCH_CHUNK,
    ) -> None:
        self.store = store
        self.queue = queue
        self.member_uuid = member_uuid
        self.stop = stop
        self._clock_ms = clock_ms
        self._held = held
        self._on_queued = on_queued
        self._poll_ms = poll_ms
        self._first_chunk = max(1, first_chunk)
        self._wake = threading.Event()
        self._next_dispatch_ms = 0
        self._next_requeue_check_ms = 0

    def wake(self) -> None:
        """Executions were fired or assigned here: dispatch at once."""
        self._wake.set()

    def run(self) -> None:
        """Run passes until ``stop`` is set; transient errors are logged and retried."""
        what = f"member {self.member_uuid}: dispatcher"
        run_forever(self._wait_and_step, stop=self.stop, what=what, logger=log)

    def _wait_and_step(self) -> None:
        delay_ms = self.step(self._clock_ms())
        if delay_ms > 0:
            self._wake.wait(delay_ms / 1000)

    def step(self, now_ms: int) -> int:
        """One pass at ``now_ms``; returns how long (ms) until the next one is due."""
        if self._wake.is_set():
            self._wake.clear()
            self._next_dispatch_ms = now_ms
        if now_ms >= self._next_requeue_check_ms:
            self._next_requeue_check_ms = now_ms + REQUEUE_CHECK_MS
            self.requeue_lost(now_ms)
        if now_ms >= self._next_dispatch_ms:
            self.dispatch(now_ms)
        return min(self._next_dispatch_ms, self._next_requeue_check_ms) - now_ms

    def dispatch(self, now_ms: int) -> list[str]:
        """Queue this member's due, unqueued ``scheduled`` executions; returns their ids."""
        uuid = self.member_uuid
        due, next_ms = split_due(list_unqueued(self.store, uuid), now_ms)
        start = 0
        while start < len(due):
            size = self._first_chunk if start == 0 else DISPATCH_CHUNK
            self._enqueue(due[start : start + size], now_ms)
            start += size
        poll_ms = now_ms + self._poll_ms
        self._next_dispatch_ms = poll_ms if next_ms is None else min(poll_ms, next_ms)
        return [e.id for e in due]

    def _enqueue(self, chunk: Sequence[ExecutionRow], now_ms: int) -> None:
        datas = [
            Queue.prepare_data(
                _TASK,
                args=(e.id,),
                timeout=-1,
                ttl=RQ_JOB_TTL_S,
                job_id=e.id,
                description=f"job {e.job_id} {e.trigger} {e.fire_ms}",
            )
            for e in chunk
        ]
        pipe = self.queue.connection.pipeline()
        self.queue.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
        mark_queued(self.store, [e.id for e in chunk], member_uuid=self.member_uuid, now_ms=now_ms)
        log.debug("member %s: queued %s execution(s)", self.member_uuid, len(chunk))
        self._on_queued()

    def requeue_lost(self, now_ms: int) -> list[str]:
        """Mark unqueued the executions whose RQ job was lost (module docstring); the next
        pass queues them again. Returns their ids."""
        uuid = self.member_uuid
        waiting = list_queued_before(self.store, uuid, now_ms - REQUEUE_AFTER_MS)
        if not waiting:
            return []
        on_queue = {
            i.decode() if isinstance(i, bytes) else str(i)
            for i in self.queue.connection.lrange(self.queue.key, 0, -1)
        }
        held = set(self._held())
        lost = [e.id for e in waiting if e.id not in on_queue and e.id not in held]
        if lost and unmark_queued(self.store, lost, member_uuid=uuid):
            log.warning(
                "member %s: %s queued execution(s) are not on its RQ queue (lost by Redis?); "
                "queueing them again: %s",
                uuid,
                len(lost),
                ", ".join(lost),
            )
            self._next_dispatch_ms = now_ms
        return lost
