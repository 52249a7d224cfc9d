"""The notify worker (``qwc worker notify``): the cluster's events POSTed to webhook receivers.

Every receiver of ``qwcontrol.notifications.webhooks`` has a consumer group of its own on
``{qwc}:events`` (``notify:<name>``) and a thread of its own in each worker, running its
:class:`workers.notify.receiver.ReceiverLoop`, so each receiver progresses on its own: a
slow or dead receiver delays no other, and nothing else in the cluster waits on any of
them (the emitters only append to the stream). Several replicas may run: per receiver,
one delivers and the others stand by (see :mod:`workers.notify.receiver`).

The jobs' own webhooks (``execution.*`` events with ``hook_urls``) are delivered by two
more threads in each replica, whether receivers are configured or not: the fan-out
(events -> deliveries) and the deliveries, each in a thread of its own
(:mod:`workers.notify.hooks`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from schemas.keys import Keys
from schemas.settings import Settings
from workers.bus.retry import run_forever
from workers.notify.hooks import HookDeliveries, HookFanout
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
        self.fanout = HookFanout(client, Keys(settings.redis_prefix), consumer=consumer)
        self.hooks = HookDeliveries(client, settings, clock=clock)
        self.errors: list[BaseException] = []

    def run(self) -> None:
        """Deliver until ``stop`` is set. A receiver's loop that fails for a reason other
        than a lost connection stops the worker (re-raised here) after the others stop."""
        log.info("notify worker %s: starting, %s receiver(s)", self.consumer, len(self.loops))
        if not self.loops:
            log.warning(
                "notify worker %s: no receiver configured "
                "(qwcontrol.notifications.webhooks.<name>.url and .events): only the jobs' "
                "own webhooks are delivered",
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
        threads += [
            threading.Thread(target=self._run_hooks, args=(step, name), name=name, daemon=True)
            for step, name in (
                (self._fan_out, "notify-job-hooks-fanout"),
                (self._deliver_hooks, "notify-job-hooks"),
            )
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

    def _run_hooks(self, step: Callable[[], None], what: str) -> None:
        try:
            run_forever(step, stop=self.stop, what=f"notify worker, {what}", logger=log)
        except BaseException as exc:
            log.exception("notify worker, %s: stopped by an error", what)
            self.errors.append(exc)
            self.stop.set()
        finally:
            if step == self._deliver_hooks:
                self.hooks.close()

    def _fan_out(self) -> None:
        self.fanout.step()
        self.hooks.wake.set()  # new deliveries may be due now

    def _deliver_hooks(self) -> None:
        wait_s = self.hooks.step()
        if wait_s > 0:
            self.hooks.wake.wait(wait_s)
        if self.stop.is_set():
            self.hooks.wake.set()

    def _pass(self, loop: ReceiverLoop) -> None:
        wait_s = loop.step()
        if wait_s > 0:
            self.stop.wait(wait_s)
