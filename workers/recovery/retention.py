"""The execution cleaner: executions past ``qwcontrol.executions.retention.days`` are
deleted, in small batches, by a thread of the recovery worker (as Rundeck's execution
cleaner runs inside its server).

Why the recovery worker: every deployment runs one or more (compose.yaml, ``qwc cluster
up``), it is the worker whose subject is executions, and it already holds the store and
Redis; a thread keeps the cleaning from delaying a recovery.

A pass deletes up to :data:`BATCHES_PER_PASS` batches of ``RETENTION_BATCH_ROWS`` rows,
each its own short transaction (``workers.store.delete_expired_executions``: never an
execution that has not ended). When a batch comes back short, nothing is left: the next
pass is :data:`PASS_EVERY_MS` later. When every batch was full, more is left: the next
pass follows after :data:`BUSY_PAUSE_S`, so a backlog (the first pass after an upgrade)
drains at tens of thousands of rows a second without ever holding a lock for long. A pass
that left nothing also removes the rows of jobs deleted before the cut-off that no execution
refers to any more (``workers.store.purge_deleted_jobs``): a deleted job's history stays
until retention removes it, and its row goes with the last of it.

Replicas: a pass runs only after ``SET {qwc}:retention:pass NX PX PASS_EVERY_MS``, so one
replica cleans per period; a replica that found more left deletes the key, letting the next
pass start at once wherever it runs. Deleting is idempotent anyway: two replicas racing
only share the work. "Now" is the Redis server's clock, as for every worker.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from schemas.keys import Keys
from workers.bus.retry import is_transient
from workers.bus.streams import server_time_ms
from workers.store import (
    RETENTION_BATCH_ROWS,
    Store,
    delete_expired_executions,
    expired_before_ms,
    purge_deleted_jobs,
)

__all__ = [
    "BATCHES_PER_PASS",
    "BUSY_PAUSE_S",
    "PASS_EVERY_MS",
    "Pass",
    "RetentionCleaner",
]

log = logging.getLogger(__name__)

PASS_EVERY_MS = 3_600_000  # nothing left to delete: look again in an hour
BATCHES_PER_PASS = 100
BUSY_PAUSE_S = 0.5  # more left: the next pass after this pause
ERROR_PAUSE_S = 5.0


@dataclass(frozen=True)
class Pass:
    """What one pass did: rows ``deleted``; ``more`` left (every batch was full);
    ``ran`` False when it was not due, retention is off, or another replica holds it."""

    ran: bool
    deleted: int = 0
    more: bool = False


class RetentionCleaner:
    """Deletes executions older than ``retention_days`` (0: never); see the module
    docstring. :meth:`step` does one pass at ``now_ms`` (tests move the clock);
    :meth:`run` loops in a thread until ``stop``."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        keys: Keys,
        *,
        retention_days: float,
        owner: str,
        batch_rows: int = RETENTION_BATCH_ROWS,
        batches_per_pass: int = BATCHES_PER_PASS,
        every_ms: int = PASS_EVERY_MS,
    ) -> None:
        self.redis = client
        self.store = store
        self.key = keys.retention_pass
        self.retention_days = retention_days
        self.owner = owner
        self.batch_rows = batch_rows
        self.batches_per_pass = batches_per_pass
        self.every_ms = every_ms
        self._next_ms = 0

    def step(self, now_ms: int) -> Pass:
        """One pass, if one is due at ``now_ms`` (epoch ms, Redis server clock)."""
        cutoff = expired_before_ms(now_ms, self.retention_days)
        if now_ms < self._next_ms or cutoff is None:
            return Pass(ran=False)
        self._next_ms = now_ms + self.every_ms
        if not self.redis.set(self.key, self.owner, nx=True, px=self.every_ms):
            return Pass(ran=False)
        deleted, more = 0, False
        for _ in range(self.batches_per_pass):
            batch = delete_expired_executions(
                self.store, ended_before_ms=cutoff, limit=self.batch_rows
            )
            deleted += batch
            more = batch == self.batch_rows
            if not more:
                break
        if more:
            self.redis.delete(self.key)
            self._next_ms = now_ms  # go on after a short pause
        else:
            purge_deleted_jobs(self.store, deleted_before_ms=cutoff)
        if deleted:
            log.info("retention: %s execution(s) deleted%s", deleted, " (more left)" * more)
        return Pass(ran=True, deleted=deleted, more=more)

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set; an error is logged and retried later
        (retention must never take the recovery worker down)."""
        while not stop.is_set():
            pause_s = BUSY_PAUSE_S
            try:
                done = self.step(server_time_ms(self.redis))
                if not done.more:
                    pause_s = min(self.every_ms / 1000, 60.0)
            except Exception as exc:
                if is_transient(exc):
                    log.warning("retention: connection lost (%s); retrying", exc)
                else:
                    log.exception("retention: pass failed; retrying in %.0f s", ERROR_PAUSE_S)
                pause_s = ERROR_PAUSE_S
            stop.wait(pause_s)

    def start(self, stop: threading.Event) -> threading.Thread:
        """:meth:`run` in a daemon thread, started."""
        thread = threading.Thread(target=self.run, args=(stop,), name="retention", daemon=True)
        thread.start()
        return thread
