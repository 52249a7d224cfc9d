"""The dispatcher: puts a member's due executions on its RQ queue ``qwc-<member uuid>``.

One thread, so that a slow or unreachable Redis delays queueing only, never firing (the
member's loop fires through SQL alone). Each pass:

1. every execution assigned to the member that is ``scheduled``, due (``fire_ms`` passed)
   and not queued yet (``queued_ms`` NULL) is queued — one RQ job per execution, job id =
   execution id, in one round trip per chunk (:func:`enqueue_ids`: the first chunk as big
   as the pool, so its slots start at once, then :data:`DISPATCH_CHUNK` at a time) — then
   marked queued in one statement per chunk, and the consumer is woken. Its own fires are
   queued at once when due (the loop wakes it); one claimed ahead of its time
   (:data:`workers.node.member.FIRE_AHEAD_MS`) is read by that pass, marked queued at its
   fire time then (:func:`workers.store.mark_queued_at_fire`, one statement for the batch)
   and kept, and queued at its fire time first thing by the pass then, which reads the
   store after it only if it was woken or polls anyway: a burst's first executions wait for
   no read, and nothing is written while the burst starts (one the store aborted or moved
   meanwhile is dropped by the consumer's fenced start, as any). One Redis refused stays
   kept, for the next pass. A member's first pass forgets the marks ahead its previous run
   left (:func:`workers.store.unmark_queued_at_fire`: that run may have stopped before
   their time), so they are queued when due. Executions that other processes assign to it
   (retries, recoveries, takeovers, remote executions) are found by polling every heartbeat
   interval, or every :data:`DISPATCH_POLL_MS` if that is shorter; those not due then are
   kept, as the member's own. A crash between the enqueue and the mark queues an execution
   twice: harmless, the start is fenced; so does a first pass that forgets a mark ahead
   whose execution was queued after all.
2. every :data:`REQUEUE_CHECK_MS`, the lost-job check: executions it queued more than
   :data:`REQUEUE_AFTER_MS` ago, still ``scheduled``, that are neither on the queue (one
   ``LRANGE`` of it) nor held by the pool (running, or popped by the consumer and about
   to be handed over) nor kept by the dispatcher to be queued, lost their RQ job — writes a
   Redis failover dropped, or popped by a node that died before it started them. They are
   marked unqueued, so the next pass queues them again.

An RQ job carries nothing but its id, the execution id (no arguments: not even the
command); its hash expires after :data:`RQ_JOB_TTL_S` should nobody pop it. The job's
function is :func:`not_for_rq_workers`: the member's pool runs these executions, never an
RQ worker. The jobs of a chunk differ only in their id and description, so RQ serialises
one of them (:func:`rq_job_fields`) and a Lua script writes that hash for each id, pushes
the ids and registers the queue, as ``Queue.enqueue_many`` does — in one call instead of
six commands per job (RQ's own way cost the member about 0.1 ms of CPU per execution).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence

import redis
from redis.commands.core import Script
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import now as rq_now

from workers.bus.retry import run_forever
from workers.node.scheduler import split_due
from workers.store import (
    ExecutionRow,
    Store,
    list_queued_before,
    list_unqueued,
    mark_queued,
    mark_queued_at_fire,
    unmark_queued,
    unmark_queued_at_fire,
)

__all__ = [
    "DISPATCH_CHUNK",
    "DISPATCH_POLL_MS",
    "REQUEUE_AFTER_MS",
    "REQUEUE_CHECK_MS",
    "RQ_JOB_TTL_S",
    "Dispatcher",
    "enqueue_ids",
    "enqueue_script",
    "not_for_rq_workers",
    "queue_name",
    "rq_job_fields",
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


def not_for_rq_workers(*_args: object) -> None:
    """The function of a member's RQ jobs (the job id is the execution id): an RQ worker
    must not run them (the member's pool does). Raises ``RuntimeError``."""
    raise RuntimeError("an execution is run by its member's pool (qwc node), not by an RQ worker")


_TASK = f"{__name__}.{not_for_rq_workers.__name__}"

# KEYS: the queue, RQ's set of queues. ARGV: the job key prefix, the TTL (s), the number of
# template values, the template (field, value, ...), then (id, description) per job. RQ's
# queue is never on a Redis Cluster (see workers.bus.connect.rq_redis_url_for), so the job
# keys need not be declared.
_ENQUEUE_SCRIPT = """
local prefix, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local fields = {unpack(ARGV, 4, 3 + n)}
local ids = {}
for i = 4 + n, #ARGV, 2 do
  local key = prefix .. ARGV[i]
  redis.call('HSET', key, 'description', ARGV[i + 1], unpack(fields))
  redis.call('EXPIRE', key, ttl)
  ids[#ids + 1] = ARGV[i]
end
if #ids > 0 then
  redis.call('SADD', KEYS[2], KEYS[1])
  redis.call('RPUSH', KEYS[1], unpack(ids))
end
return #ids
"""


def enqueue_script(client: redis.Redis) -> Script:
    """The script :func:`enqueue_ids` runs, registered on ``client`` (once: registering
    hashes its text)."""
    return client.register_script(_ENQUEUE_SCRIPT)


_Arg = bytes | str | int | float


def rq_job_fields(queue: Queue) -> dict[str, _Arg]:
    """The hash of a member's RQ job as RQ serialises it, queued on ``queue`` now, but its
    description (each job has its own)."""
    job = queue.create_job(
        _TASK, timeout=-1, ttl=RQ_JOB_TTL_S, job_id="template", status=JobStatus.QUEUED
    )
    job.origin = queue.name
    job.enqueued_at = rq_now()
    fields: dict[str, _Arg] = job.to_dict()
    fields.pop("description", None)
    return fields


def enqueue_ids(script: Script, queue: Queue, jobs: Sequence[tuple[str, str]]) -> int:
    """Queue one RQ job per ``(execution id, description)`` of ``jobs`` at the tail of
    ``queue``, in order, in one call (``script``: :func:`enqueue_script`); returns how many.
    Redis errors propagate."""
    if not jobs:
        return 0
    template = [x for pair in rq_job_fields(queue).items() for x in pair]
    args: list[_Arg] = [Job.redis_job_namespace_prefix, RQ_JOB_TTL_S, len(template)]
    args += template
    for execution_id, description in jobs:
        args += (execution_id, description)
    return int(script(keys=[queue.key, Queue.redis_queues_keys], args=args))


class Dispatcher:
    """Queues the member's due executions (module docstring). ``held()`` names executions
    the pool holds or is about to (never lost); ``on_queued()`` wakes the consumer;
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
        self._script: Script | None = None
        self._soon: list[ExecutionRow] = []  # read not due, marked ahead, queued when due
        self._first_pass = True
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
        now_ms = self._clock_ms()
        next_ms = now_ms + self.step(now_ms)
        delay_ms = next_ms - self._clock_ms()  # from the pass's end: it took time too
        if delay_ms > 0:
            self._wake.wait(delay_ms / 1000)

    def step(self, now_ms: int) -> int:
        """One pass at ``now_ms``; returns how long (ms) until the next one is due. It reads
        the store when woken or at the poll time; at a kept execution's fire time only, it
        queues what is due of those kept, and reads nothing."""
        if self._wake.is_set():
            self._wake.clear()
            self._next_dispatch_ms = now_ms
        if now_ms >= self._next_requeue_check_ms:
            self._next_requeue_check_ms = now_ms + REQUEUE_CHECK_MS
            self.requeue_lost(now_ms)
        if now_ms >= self._next_dispatch_ms:
            self.dispatch(now_ms)
        else:
            self._enqueue_kept(now_ms)
        next_kept_ms = self._soon[0].fire_ms if self._soon else self._next_dispatch_ms
        return min(self._next_dispatch_ms, next_kept_ms, self._next_requeue_check_ms) - now_ms

    def dispatch(self, now_ms: int) -> list[str]:
        """Queue this member's due, unqueued ``scheduled`` executions; returns their ids."""
        if self._first_pass:  # what a previous run marked ahead may never have been queued
            unmark_queued_at_fire(self.store, self.member_uuid)
            self._first_pass = False
        ready = self._enqueue_kept(now_ms)
        pending = list_unqueued(self.store, self.member_uuid)
        due, _ = split_due(pending, now_ms)
        self._enqueue_all(due, now_ms)
        soon = [e for e in pending if e.fire_ms > now_ms]
        mark_queued_at_fire(self.store, [e.id for e in soon], member_uuid=self.member_uuid)
        kept = {e.id for e in self._soon}
        self._soon = sorted(
            [*self._soon, *(e for e in soon if e.id not in kept)], key=lambda e: (e.fire_ms, e.id)
        )
        self._next_dispatch_ms = now_ms + self._poll_ms
        return [e.id for e in [*ready, *due]]

    def _enqueue_kept(self, now_ms: int) -> list[ExecutionRow]:
        """Queue the kept executions (marked ahead) due at ``now_ms``; returns them."""
        ready, _ = split_due(self._soon, now_ms)
        self._enqueue_all(ready, now_ms, marked=True)
        self._soon = self._soon[len(ready) :]  # kept until queued: a failed pass retries them
        return ready

    def _enqueue_all(
        self, due: Sequence[ExecutionRow], now_ms: int, *, marked: bool = False
    ) -> None:
        """Queue ``due`` in chunks: the first as big as the pool, then DISPATCH_CHUNK; each
        chunk is then marked queued at ``now_ms``, unless ``marked`` ahead already."""
        start = 0
        while start < len(due):
            size = self._first_chunk if start == 0 else DISPATCH_CHUNK
            self._enqueue(due[start : start + size], now_ms, marked)
            start += size

    def _enqueue(self, chunk: Sequence[ExecutionRow], now_ms: int, marked: bool) -> None:
        jobs = [(e.id, f"job {e.job_id} {e.trigger} {e.fire_ms}") for e in chunk]
        enqueue_ids(self._enqueue_script(), self.queue, jobs)
        if not marked:
            ids = [e.id for e in chunk]
            mark_queued(self.store, ids, member_uuid=self.member_uuid, now_ms=now_ms)
        log.debug("member %s: queued %s execution(s)", self.member_uuid, len(chunk))
        self._on_queued()

    def _enqueue_script(self) -> Script:
        """The enqueue script, registered on the queue's client (once per client)."""
        client = self.queue.connection
        if self._script is None or self._script.registered_client is not client:
            self._script = enqueue_script(client)
        return self._script

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
        held = {*self._held(), *(e.id for e in self._soon)}  # the pool's, and those due soon
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
