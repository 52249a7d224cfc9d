"""The notify worker (``qwc worker notify``): the cluster's events POSTed to webhook receivers.

Every receiver of ``qwcontrol.notifications.webhooks`` has a consumer group of its own on
``{qwc}:events`` (``notify:<name>``) and a thread of its own in each worker, running its
:class:`workers.notify.receiver.ReceiverLoop`, so each receiver progresses on its own: a
slow or dead receiver delays no other, and nothing else in the cluster waits on any of
them (the emitters only append to the stream). Several replicas may run: per receiver,
one delivers and the others stand by (see :mod:`workers.notify.receiver`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from schemas.settings import Settings
from workers.bus.retry import run_forever
from workers.notify.receiver import ReceiverLoop

__all__ = ["STOP_GRACE_S", "NotifyWorker"]

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0  # on stop, how long a delivery under way may still take


class NotifyWorker:
    """One replica of the notify worker: a :class:`ReceiverLoop` thread per receiver."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        consumer: str,
        stop: threading.Event | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.consumer = consumer
        self.loops = [
            ReceiverLoop(client, settings, w, consumer=consumer, clock=clock)
            for w in settings.notification_webhooks
        ]
        self.errors: list[BaseException] = []

    def run(self) -> None:
        """Deliver until ``stop`` is set. A receiver's loop that fails for a reason other
        than a lost connection stops the worker (re-raised here) after the others stop."""
        log.info("notify worker %s: starting, %s receiver(s)", self.consumer, len(self.loops))
        if not self.loops:
            log.warning(
                "notify worker %s: no receiver configured "
                "(qwcontrol.notifications.webhooks.<name>.url and .events): nothing to deliver",
                self.consumer,
            )
        threads = [
            threading.Thread(
                target=self._run_loop,
                args=(loop,),
                name=f"notify-{loop.receiver.name}",
                daemon=True,  # one still waiting on its receiver does not hold the exit up
            )
            for loop in self.loops
        ]
        for thread in threads:
            thread.start()
        self.stop.wait()
        deadline = time.monotonic() + STOP_GRACE_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in threads if t.is_alive()]
        if busy:  # their events stay pending: the next holder of the lease sends them again
            log.warning("notify worker %s: stopped during a delivery: %s", self.consumer, busy)
        log.info("notify worker %s: stopped", self.consumer)
        if self.errors:
            raise self.errors[0]

    def _run_loop(self, loop: ReceiverLoop) -> None:
        what = f"notify worker, receiver {loop.receiver.name}"
        try:
            run_forever(lambda: self._pass(loop), stop=self.stop, what=what, logger=log)
        except BaseException as exc:
            log.exception("%s: stopped by an error", what)
            self.errors.append(exc)
            self.stop.set()
        finally:
            loop.close()

    def _pass(self, loop: ReceiverLoop) -> None:
        wait_s = loop.step()
        if wait_s > 0:
            self.stop.wait(wait_s)
