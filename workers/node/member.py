"""The reference member: heartbeats, schedules the jobs it owns, fires them through the fence,
and runs them on its own RQ queue.

:func:`run_member` starts it and runs until ``stop`` is set:

1. marks the member's leftover ``running`` executions ``incomplete`` (before its RQ worker
   starts, so a just-started execution is never mistaken for a leftover), retrying here
   those of jobs with retries left when recoverExecutions applies to it
   (:func:`workers.recovery.startup.startup_cleanup`);
2. forks the RQ worker child on queue ``qwc-<member uuid>`` and starts the heartbeat
   producer;
3. loops (:class:`Member`): every heartbeat interval it reloads the jobs it owns and the ids
   of its running executions (sent with the heartbeats); at each due fire time it claims the
   time through :func:`workers.store.fire_job` (the fence), which inserts the execution.
   A refused claim means the job was lost: it is unscheduled and logged once; a later
   reload schedules it again if the member owns it.
4. dispatches: every execution assigned to it that is ``scheduled``, due (``fire_ms``
   passed) and not yet queued (``queued_ms`` NULL) is put on its RQ queue (RQ job id = the
   execution id) and marked queued. Its own fires are dispatched at once; executions that
   other processes assign to it (retries of failed runs, recoveries, takeovers, remote
   executions) are found by polling every :data:`DISPATCH_POLL_MS` at most. A crash between
   the commit and the enqueue leaves the execution unqueued: it is enqueued on the next
   pass (a second enqueue of the same id is harmless: the task only starts an execution
   that is still ``scheduled`` on this member).
   Every :data:`REQUEUE_CHECK_MS` it looks for executions it queued more than
   :data:`REQUEUE_AFTER_MS` ago that are still ``scheduled`` and not waiting on its RQ
   queue: their RQ job was lost (writes a Redis failover dropped), or taken by a work horse
   that died before it started the execution (Redis went away under it), or failed before
   the start. They are marked unqueued, so the next dispatch enqueues them again; the
   start is fenced, so a late first horse and the new one never both run it.
5. every ``remoteExec.process.interval`` it processes its remote commands (when given a
   command processor). A transient error there is logged and does not hold up firing.
6. every :data:`RQ_RESTART_CHECK_MS` it restarts its RQ worker child if that exited (RQ's
   worker exits when Redis goes away, as in a failover).
7. on ``stop``: stops firing, the producer, then the RQ worker (warm shutdown).

Transient Redis/SQL errors are logged and retried (:func:`workers.bus.retry.run_forever`).
Log lines start with ``member <uuid>:``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rq import Queue
from rq.job import Job, JobStatus

from producers.heartbeat import HeartbeatProducer
from schemas.keys import Keys
from schemas.settings import Settings
from workers.bus.connect import connect, redis_url_for, rq_redis_url_for
from workers.bus.retry import is_transient, run_forever
from workers.node.commands import CommandProcessor
from workers.node.rq_worker import RqWorkerProcess, queue_name
from workers.node.runner import run_execution, use_database
from workers.node.scheduler import Fire, JobSchedule, ReloadResult, split_due
from workers.recovery.startup import startup_cleanup
from workers.store import (
    Store,
    fire_job,
    list_executions,
    list_jobs,
    list_queued_before,
    list_unqueued,
    mark_queued,
    open_store,
    set_next_fire_ms,
    store_url,
    unmark_queued,
)

__all__ = [
    "DISPATCH_POLL_MS",
    "REQUEUE_AFTER_MS",
    "REQUEUE_CHECK_MS",
    "RESULT_TTL_S",
    "RQ_RESTART_CHECK_MS",
    "Member",
    "MemberConfig",
    "run_member",
    "wall_clock_ms",
]

log = logging.getLogger(__name__)

RESULT_TTL_S = 3600  # how long RQ keeps a job's return value and failure info
RQ_WARM_STOP_S = 5.0  # + RQ cold shutdown 2 s: the node exits within 10 s of SIGTERM
DISPATCH_POLL_MS = 1_000  # at most this long before an execution assigned by others is queued
RQ_RESTART_CHECK_MS = 1_000  # a dead RQ worker child is restarted within about this long
REQUEUE_CHECK_MS = 5_000  # how often queued, unstarted executions are checked against RQ
REQUEUE_AFTER_MS = 5_000  # queued this long ago, not started, no live RQ job: queue it again


def wall_clock_ms() -> int:
    """The member's wall clock, epoch ms (cron schedules follow the member's clock)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class MemberConfig:
    """What the loop needs: who it is, how often it reloads, where executions are recorded."""

    member_uuid: str
    interval_s: float
    database_url: str  # the store the RQ worker it forks uses (set by use_database)
    queue: str


class Member:
    """The member's scheduling loop (one thread). ``step()`` does one pass and then waits
    until the next fire time or reload, or until ``stop`` is set.

    ``clock_ms`` (epoch ms) and ``sleep_s`` (how to wait that many seconds) are injectable:
    a test moves the clock and does not sleep.
    """

    def __init__(
        self,
        config: MemberConfig,
        *,
        store: Store,
        queue: Queue,
        producer: HeartbeatProducer,
        stop: threading.Event,
        schedule: JobSchedule | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        sleep_s: Callable[[float], object] | None = None,
        rq_worker: RqWorkerProcess | None = None,
        commands: Callable[[], object] | None = None,
        commands_every_s: float = 10.0,
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.producer = producer
        self.stop = stop
        self.schedule = schedule or JobSchedule()
        self._clock_ms = clock_ms
        self._sleep_s = sleep_s or stop.wait  # stop.wait: a stop ends the wait at once
        self.rq_worker = rq_worker
        self.commands = commands
        self._interval_ms = max(1, round(config.interval_s * 1000))
        self._dispatch_every_ms = min(self._interval_ms, DISPATCH_POLL_MS)
        self._commands_every_ms = max(1, round(commands_every_s * 1000))
        self._next_reload_ms = 0
        self._next_dispatch_ms = 0  # the next poll, or an unqueued execution's fire time
        self._next_commands_ms = 0
        self._next_requeue_check_ms = 0
        self._next_rq_check_ms = 0

    def run(self) -> None:
        """Run until ``stop`` is set; transient errors are logged and retried."""
        what = f"member {self.config.member_uuid}"
        run_forever(self.step, stop=self.stop, what=what, logger=log)

    def step(self) -> None:
        """Reload if due, process commands if due, fire what is due, dispatch, wait."""
        now_ms = self._clock_ms()
        self._restart_rq_worker_if_dead(now_ms)
        if self.commands is not None and now_ms >= self._next_commands_ms:
            self._next_commands_ms = now_ms + self._commands_every_ms
            self._process_commands()
            self._next_dispatch_ms = now_ms  # a remote execution is queued at once
        if now_ms >= self._next_reload_ms:
            self.reload(now_ms)
            self._next_reload_ms = now_ms + self._interval_ms
        due = self.schedule.due(now_ms)
        for miss in due.misfires:
            log.warning(
                "member %s: job %s missed its fire times from %s to %s ms (too late)",
                self.config.member_uuid,
                miss.job_id,
                miss.first_ms,
                miss.until_ms,
            )
        for fire in due.fires:
            if self.stop.is_set():
                return
            self.fire(fire, now_ms)
        if now_ms >= self._next_requeue_check_ms:
            self._next_requeue_check_ms = now_ms + REQUEUE_CHECK_MS
            self.requeue_lost(now_ms)
        if now_ms >= self._next_dispatch_ms:
            self.dispatch(now_ms)
        self._wait()

    def _process_commands(self) -> None:
        """Process remote commands; a transient error waits for the next interval, so that a
        Redis outage never holds up firing (fires go through the store)."""
        assert self.commands is not None
        try:
            self.commands()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning(
                "member %s: remote commands not processed (%s: %s); next try in %.1f s",
                self.config.member_uuid,
                type(exc).__name__,
                exc,
                self._commands_every_ms / 1000,
            )

    def requeue_lost(self, now_ms: int) -> list[str]:
        """Mark unqueued this member's executions queued over REQUEUE_AFTER_MS ago, still
        ``scheduled`` and not waiting on the RQ queue: the next dispatch enqueues them
        again. Returns their ids. (A horse starts its execution within milliseconds of
        taking the job, so one still ``scheduled`` this long after is not being run.)"""
        uuid = self.config.member_uuid
        waiting = list_queued_before(self.store, uuid, now_ms - REQUEUE_AFTER_MS)
        if not waiting:
            return []
        jobs = Job.fetch_many([e.id for e in waiting], connection=self.queue.connection)
        lost = [
            e.id
            for e, job in zip(waiting, jobs, strict=True)
            if job is None
            or job.get_status(refresh=False) != JobStatus.QUEUED
            or self.queue.get_job_position(e.id) is None
        ]
        if lost and unmark_queued(self.store, lost, member_uuid=uuid):
            log.warning(
                "member %s: %s queued execution(s) have no live RQ job (lost by Redis?); "
                "queueing them again: %s",
                uuid,
                len(lost),
                ", ".join(lost),
            )
            self._next_dispatch_ms = now_ms
        return lost

    def _restart_rq_worker_if_dead(self, now_ms: int) -> None:
        """Restart the RQ worker child if it exited (RQ exits when Redis goes away), at
        most once per RQ_RESTART_CHECK_MS."""
        if self.rq_worker is None or now_ms < self._next_rq_check_ms:
            return
        self._next_rq_check_ms = now_ms + RQ_RESTART_CHECK_MS
        exit_code = self.rq_worker.restart_if_dead()
        if exit_code is not None:
            log.error(
                "member %s: rq worker exited (exit %s); restarted it",
                self.config.member_uuid,
                exit_code,
            )

    def reload(self, now_ms: int) -> ReloadResult:
        """Re-read the jobs this member owns and its running executions."""
        uuid = self.config.member_uuid
        jobs = list_jobs(self.store, owner_uuid=uuid)
        running = list_executions(self.store, member_uuid=uuid, statuses=("running",))
        self.producer.set_running(e.id for e in running)
        result = self.schedule.reload(jobs, now_ms=now_ms)
        self._log_reload(result)
        return result

    def _log_reload(self, result: ReloadResult) -> None:
        uuid = self.config.member_uuid
        for plan in result.added:
            log.info(
                "member %s: scheduling job %s (epoch %s), next fire %s",
                uuid,
                plan.job_id,
                plan.owner_epoch,
                plan.next_fire_ms,
            )
        for gone in result.removed:
            if gone.reason == "lost":
                self._log_lost(gone.job_id, gone.owner_epoch)
            else:
                log.info("member %s: unscheduled job %s (%s)", uuid, gone.job_id, gone.reason)
        for bad in result.invalid:
            log.warning("member %s: job %s not scheduled: %s", uuid, bad.job_id, bad.reason)

    def _log_lost(self, job_id: str, owner_epoch: int) -> None:
        log.warning(
            "member %s: lost job %s (epoch %s)", self.config.member_uuid, job_id, owner_epoch
        )

    def fire(self, fire: Fire, now_ms: int) -> str | None:
        """Claim ``fire`` through the fence and enqueue its execution; returns its id, or
        None when the fence refused (the job is then unscheduled and logged as lost).
        When the enqueue fails, the execution stays unqueued for the next dispatch."""
        if not self.schedule.is_planned(fire):
            return None  # lost earlier in this pass
        uuid = self.config.member_uuid
        next_ms = self.schedule.next_after(fire)
        with self.store.begin() as conn:
            execution_id = fire_job(
                conn,
                job_id=fire.job_id,
                member_uuid=uuid,
                owner_epoch=fire.owner_epoch,
                fire_ms=fire.fire_ms,
                now_ms=now_ms,
            )
            if execution_id is not None:
                set_next_fire_ms(
                    conn,
                    job_id=fire.job_id,
                    member_uuid=uuid,
                    owner_epoch=fire.owner_epoch,
                    next_fire_ms=next_ms,
                )
        if execution_id is None:
            if self.schedule.lost(fire.job_id) is not None:
                self._log_lost(fire.job_id, fire.owner_epoch)
            return None
        self.schedule.fired(fire.job_id, fire.fire_ms)
        log.debug(
            "member %s: fired job %s at %s: %s", uuid, fire.job_id, fire.fire_ms, execution_id
        )
        self._next_dispatch_ms = now_ms  # enqueue it in this pass
        return execution_id

    def dispatch(self, now_ms: int) -> list[str]:
        """Enqueue this member's due, unqueued ``scheduled`` executions; returns their ids."""
        uuid = self.config.member_uuid
        due, next_ms = split_due(list_unqueued(self.store, uuid), now_ms)
        for execution in due:
            self.queue.enqueue_call(
                run_execution,
                args=(execution.id,),
                timeout=-1,  # no timeout: the command runs as long as it runs
                result_ttl=RESULT_TTL_S,
                failure_ttl=RESULT_TTL_S,
                job_id=execution.id,
                description=f"job {execution.job_id} {execution.trigger} {execution.fire_ms}",
            )
            mark_queued(self.store, [execution.id], member_uuid=uuid, now_ms=now_ms)
            log.debug("member %s: queued execution %s", uuid, execution.id)
        poll_ms = now_ms + self._dispatch_every_ms
        self._next_dispatch_ms = poll_ms if next_ms is None else min(poll_ms, next_ms)
        return [e.id for e in due]

    def _wait(self) -> None:
        wake_ms = min(self._next_reload_ms, self._next_dispatch_ms)
        if self.commands is not None:
            wake_ms = min(wake_ms, self._next_commands_ms)
        next_due_ms = self.schedule.next_due_ms()
        if next_due_ms is not None:
            wake_ms = min(wake_ms, next_due_ms)
        delay_ms = wake_ms - self._clock_ms()
        if delay_ms > 0:
            self._sleep_s(delay_ms / 1000)


def run_member(
    settings: Settings, *, member_uuid: str, name: str, passive: bool, stop: threading.Event
) -> None:
    """Run the member ``member_uuid`` until ``stop`` is set (see the module docstring).

    Raises ``schemas.errors.StoreError`` when the store cannot be opened (PostgreSQL not
    migrated, bad URL) and ``EmbeddedRedisError`` when the embedded Redis cannot start.
    """
    store = open_store(settings)
    try:
        redis_url = redis_url_for(settings)
        rq_url = rq_redis_url_for(settings)
        if not _retry_until_done(
            lambda: startup_cleanup(
                store, settings, member_uuid=member_uuid, now_ms=wall_clock_ms()
            ),
            stop=stop,
            what=f"member {member_uuid}",
        ):
            return
        store.dispose()  # the RQ worker child must not inherit pooled connections
        config = MemberConfig(
            member_uuid, settings.heartbeat_interval_s, store_url(settings), queue_name(member_uuid)
        )
        # inherited by the RQ worker it forks; running commands re-check the store each interval
        use_database(config.database_url, member_uuid, check_every_s=settings.heartbeat_interval_s)
        worker = RqWorkerProcess(rq_url, config.queue, log_level=logging.getLogger().level)
        worker.start()
        try:
            _run_loop(
                settings,
                config,
                redis_url,
                rq_url,
                store=store,
                worker=worker,
                name=name,
                passive=passive,
                stop=stop,
            )
        finally:
            worker.stop(warm_s=RQ_WARM_STOP_S)
    finally:
        store.close()


def _run_loop(
    settings: Settings,
    config: MemberConfig,
    redis_url: str,
    rq_url: str,
    *,
    store: Store,
    worker: RqWorkerProcess,
    name: str,
    passive: bool,
    stop: threading.Event,
) -> None:

    client = connect(redis_url, client_name=f"node-{name}", prefix=settings.redis_prefix)
    rq_client = client if rq_url == redis_url else connect(rq_url, client_name=f"node-{name}-rq")
    keys = Keys(settings.redis_prefix)
    secret = settings.heartbeat_secret
    producer = HeartbeatProducer(
        client,
        uuid=config.member_uuid,
        name=name,
        interval_s=settings.heartbeat_interval_s,
        delay_s=settings.heartbeat_delay_s,
        keys=keys,
        tags=settings.server_tags,
        passive=passive,
        secret=secret.get_secret_value() if secret else None,
    )
    producer.start()
    log.info("member %s (%s): running, queue %s", config.member_uuid, name, config.queue)
    try:
        member = Member(
            config,
            store=store,
            queue=Queue(config.queue, connection=rq_client),
            producer=producer,
            rq_worker=worker,
            stop=stop,
            commands=CommandProcessor(
                client,
                store,
                keys,
                member_uuid=config.member_uuid,
                clock_ms=wall_clock_ms,
                rq_client=rq_client,
            ).process,
            commands_every_s=settings.remote_exec_process_interval_s,
        )
        member.run()
    finally:
        producer.stop()
        client.close()
        if rq_client is not client:
            rq_client.close()
        log.info("member %s (%s): stopped", config.member_uuid, name)


def _retry_until_done(
    action: Callable[[], object], *, stop: threading.Event, what: str, max_backoff_s: float = 5.0
) -> bool:
    """Call ``action`` until it succeeds (True) or ``stop`` is set (False), retrying
    transient errors with logged exponential backoff; other errors propagate."""
    delay_s = 0.05
    while not stop.is_set():
        try:
            action()
            return True
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s: connection lost (%s); retry in %.2fs", what, exc, delay_s)
            stop.wait(delay_s)
            delay_s = min(delay_s * 2, max_backoff_s)
    return False
