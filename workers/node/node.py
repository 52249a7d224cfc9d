"""``qwc node``: one member, its threads, and how it starts and stops.

:func:`run_member` starts it and runs until ``stop`` is set:

1. marks the member's leftover ``running`` executions ``incomplete`` (before anything
   runs, so a just-started execution is never mistaken for a leftover), retrying here
   those of jobs with retries left when recoverExecutions applies to it
   (:func:`workers.recovery.startup.startup_cleanup`);
2. starts its watchdog process (:mod:`workers.node.watchdog`), the heartbeat producer,
   and these threads: the dispatcher (:mod:`workers.node.dispatcher`: due executions ->
   its RQ queue ``qwc-<uuid>``), the consumer (:mod:`workers.node.consumer`: the queue ->
   its pool, while a slot is free), the command reader (:mod:`workers.node.commands`, every
   ``remoteExec.process.interval``), and the pool's ``threadCount`` slots
   (:mod:`workers.node.pool`);
3. runs the scheduling loop (:class:`workers.node.member.Member`, SQL only) in the calling
   thread;
4. on ``stop`` it drains: it stops firing, dispatching, taking executions off its queue and
   reading commands, announces itself passive (its next heartbeat: no retry or job is sent
   to it any more), and gives its running executions up to ``executions.drainTimeout``
   seconds to finish. Those still running then are marked ``incomplete`` and retried per
   their job on another active, non-passive member (of the liveness view, else of the
   store's member table: :func:`drain_destinations`)
   (:func:`workers.recovery.startup.recover_own`, policy ``drain``), and their process
   groups are ended. Then the heartbeats stop and it returns (``qwc node`` exits 0).
   What waits on its queue stays there for its next start (or a recovery, should it be
   declared dead).

Transient Redis/SQL errors are logged and retried in each thread. Log lines start with
``member <uuid>:``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence

import redis
from rq import Queue

from producers.heartbeat import HeartbeatProducer
from schemas.keys import Keys
from schemas.settings import Settings
from workers.bus.connect import connect, redis_url_for, rq_redis_url_for
from workers.bus.retry import is_transient, run_forever
from workers.gcpause import freeze_startup
from workers.liveness import view
from workers.node.commands import CommandProcessor
from workers.node.consumer import Consumer, Quiet
from workers.node.dispatcher import DISPATCH_POLL_MS, Dispatcher, queue_name
from workers.node.member import Member, MemberConfig, wall_clock_ms
from workers.node.pool import ExecutionPool
from workers.node.recorder import Recorder
from workers.node.scheduler import JobSchedule
from workers.node.tell import Teller
from workers.node.watchdog import Watchdog, WatchdogConfig
from workers.notify.sender import EventSender
from workers.proposals import Candidate, candidates_from_members, candidates_from_view
from workers.recovery.startup import DRAIN_REASON, recover_own, startup_cleanup
from workers.store import Store, list_members, open_store, store_url

__all__ = ["drain_destinations", "run_member", "watchdog_argv"]

log = logging.getLogger(__name__)

DRAIN_COMMIT_RETRY_S = 5.0  # a drain's hand-back is retried this long (the store down)
_THREAD_JOIN_S = 2.0


def watchdog_argv(log_flags: Sequence[str] = ()) -> list[str]:
    """The command that runs the node's watchdog (``qwc node-watchdog``), with the CLI's
    logging flags."""
    return [sys.executable, "-m", "workers.cli", *log_flags, "node-watchdog"]


def run_member(
    settings: Settings,
    *,
    member_uuid: str,
    name: str,
    passive: bool,
    stop: threading.Event,
    watchdog_cmd: Sequence[str] | None = None,
) -> None:
    """Run the member ``member_uuid`` until ``stop`` is set, then drain (module docstring).

    Raises ``schemas.errors.StoreError`` when the store cannot be opened (PostgreSQL not
    migrated, bad URL) and ``EmbeddedRedisError`` when the embedded Redis cannot start.
    """
    store = open_store(settings)
    try:
        if not _retry_until_done(
            lambda: startup_cleanup(
                store, settings, member_uuid=member_uuid, now_ms=wall_clock_ms()
            ),
            stop=stop,
            what=f"member {member_uuid}",
        ):
            return
        # The start path first: the writers hold their batches while the consumer is busy.
        quiet = Quiet()
        watchdog = Watchdog(
            watchdog_cmd or watchdog_argv(),
            WatchdogConfig(store_url(settings), member_uuid, settings.heartbeat_interval_s),
            hold=quiet.hold,
        )
        watchdog.start()
        try:
            _Node(settings, store, watchdog, quiet, member_uuid, name, passive, stop).run()
        finally:
            watchdog.close()
    finally:
        store.close()


class _Node:
    """The running parts of one member (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        watchdog: Watchdog,
        quiet: Quiet,
        member_uuid: str,
        name: str,
        passive: bool,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.store = store
        self.uuid = member_uuid
        self.name = name
        self.stop = stop
        self.keys = Keys(settings.redis_prefix)
        redis_url, rq_url = redis_url_for(settings), rq_redis_url_for(settings)
        self.client = connect(redis_url, client_name=f"node-{name}", prefix=settings.redis_prefix)
        self.rq_client = (
            self.client if rq_url == redis_url else connect(rq_url, client_name=f"node-{name}-rq")
        )
        secret = settings.heartbeat_secret
        self.producer = HeartbeatProducer(
            self.client,
            uuid=member_uuid,
            name=name,
            interval_s=settings.heartbeat_interval_s,
            delay_s=settings.heartbeat_delay_s,
            keys=self.keys,
            tags=settings.server_tags,
            passive=passive,
            secret=secret.get_secret_value() if secret else None,
        )
        self.halt = threading.Event()  # set on stop: no more dispatching, popping, commands
        queue = Queue(queue_name(member_uuid), connection=self.rq_client)
        self.sender = EventSender(self.client, self.keys, hold=quiet.hold)
        self.teller = Teller(self.sender, member_name=name)
        self.recorder = Recorder(
            store, clock_ms=wall_clock_ms, on_recorded=self.teller.recorded, hold=quiet.hold
        )
        self.pool = ExecutionPool(
            settings.executions_thread_count,
            record=self.recorder.put,
            groups=watchdog,
            on_free=lambda: self.consumer.slot_freed(),
            output_max_bytes=settings.executions_output_max_bytes,
        )
        self.consumer = Consumer(
            self.rq_client,
            queue.key,
            store,
            self.pool,
            member_uuid=member_uuid,
            stop=self.halt,
            clock_ms=wall_clock_ms,
            on_started=self.teller.started,
            quiet=quiet,
        )
        self.dispatcher = Dispatcher(
            store,
            queue,
            member_uuid=member_uuid,
            stop=self.halt,
            clock_ms=wall_clock_ms,
            held=self.pool.held_ids,
            on_queued=self.consumer.wake,
            poll_ms=min(DISPATCH_POLL_MS, max(1, round(settings.heartbeat_interval_s * 1000))),
            first_chunk=settings.executions_thread_count,
        )
        self.commands = CommandProcessor(
            self.client,
            store,
            self.keys,
            member_uuid=member_uuid,
            clock_ms=wall_clock_ms,
            end_execution=lambda eid, reason: self.pool.end(eid, None, reason),
            on_replaced=self.pool.end_replaced,
        )
        self.member = Member(
            MemberConfig(member_uuid, settings.heartbeat_interval_s),
            schedule=JobSchedule(default_time_zone=settings.scheduler_time_zone),
            store=store,
            producer=self.producer,
            stop=stop,
            on_fired=self.dispatcher.wake,
            on_replaced=self.pool.end_replaced,
        )

    def run(self) -> None:
        frozen = freeze_startup()  # a full collection would stop every thread for ~45 ms
        log.debug("member %s: %s objects made to start frozen (gc)", self.uuid, frozen)
        self.producer.start()
        threads = [
            threading.Thread(target=self.dispatcher.run, name="dispatcher", daemon=True),
            threading.Thread(target=self.consumer.run, name="consumer", daemon=True),
            threading.Thread(target=self._read_commands, name="commands", daemon=True),
        ]
        for thread in threads:
            thread.start()
        log.info(
            "member %s (%s): running, queue %s, %s slots",
            self.uuid,
            self.name,
            queue_name(self.uuid),
            self.pool.slots,
        )
        try:
            self.member.run()
        finally:
            self.halt.set()
            self.consumer.wake()
            self.dispatcher.wake()
            try:
                self._drain()
            finally:
                for thread in threads:
                    thread.join(_THREAD_JOIN_S)
                self.producer.stop()
                self.client.close()
                if self.rq_client is not self.client:
                    self.rq_client.close()
                log.info("member %s (%s): stopped", self.uuid, self.name)

    def _read_commands(self) -> None:
        every_s = self.settings.remote_exec_process_interval_s

        def step() -> None:
            if any(p.action == "execute" for p in self.commands.process()):
                self.dispatcher.wake()  # a remote execution is queued at once
            self.halt.wait(every_s)

        run_forever(step, stop=self.halt, what=f"member {self.uuid}: commands", logger=log)

    def _drain(self) -> None:
        """Let running executions finish for up to drainTimeout, then hand back the rest."""
        timeout_s = self.settings.executions_drain_timeout_s
        self.producer.set_passive(True)
        running = self.pool.running_ids()
        if running:
            log.info(
                "member %s: draining: %s execution(s) running, up to %.1f s to finish",
                self.uuid,
                len(running),
                timeout_s,
            )
        if not self.pool.wait_idle(timeout_s):
            left = self.pool.running_ids()
            log.warning(
                "member %s: drain timeout: %s execution(s) still running: %s",
                self.uuid,
                len(left),
                ", ".join(sorted(left)),
            )
            _retry_until_done(
                lambda: recover_own(
                    self.store,
                    member_uuid=self.uuid,
                    members=self._destinations(),
                    policy="drain",
                    now_ms=wall_clock_ms(),
                    reason=DRAIN_REASON,
                    execution_ids=left,
                ),
                stop=threading.Event(),
                what=f"member {self.uuid}: drain",
                give_up_s=DRAIN_COMMIT_RETRY_S,
            )
            for execution_id in left:
                self.pool.end(execution_id, None, "drain timeout")
        self.pool.close()
        self.recorder.close()
        self.sender.close()

    def _destinations(self) -> list[Candidate]:
        return drain_destinations(self.client, self.keys, self.store, member_uuid=self.uuid)


def drain_destinations(
    client: redis.Redis, keys: Keys, store: Store, *, member_uuid: str
) -> list[Candidate]:
    """Where a drain may retry its executions: the members of the liveness view; when Redis
    does not answer or refuses (a member's Redis user may not read the view), the members
    as the store last recorded them. Store errors propagate."""
    try:
        return candidates_from_view(view.read_snapshot(client, keys), {})
    except redis.RedisError as exc:
        log.warning(
            "member %s: no liveness view for the retries (%s); using the store's members",
            member_uuid,
            exc,
        )
        return candidates_from_members(list_members(store))


def _retry_until_done(
    action: Callable[[], object],
    *,
    stop: threading.Event,
    what: str,
    max_backoff_s: float = 5.0,
    give_up_s: float | None = None,
) -> bool:
    """Call ``action`` until it succeeds (True), ``stop`` is set or ``give_up_s`` passed
    (False, logged), retrying transient errors with logged exponential backoff; other
    errors propagate."""
    delay_s = 0.05
    deadline = None if give_up_s is None else time.monotonic() + give_up_s
    while not stop.is_set():
        try:
            action()
            return True
        except Exception as exc:
            if not is_transient(exc):
                raise
            if deadline is not None and time.monotonic() + delay_s > deadline:
                log.error("%s: gave up after %.0f s: %s", what, give_up_s, exc)
                return False
            log.warning("%s: connection lost (%s); retry in %.2fs", what, exc, delay_s)
            stop.wait(delay_s)
            delay_s = min(delay_s * 2, max_backoff_s)
    return False
