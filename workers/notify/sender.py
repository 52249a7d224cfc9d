"""Appending events without waiting (thin I/O): what a member's hot paths call.

:meth:`EventSender.send` puts an event on an in-memory queue and returns at once
(:meth:`EventSender.send_later` puts a function that builds events, so a hot path does not
even build them); one thread builds and appends what the queue holds to ``{qwc}:events``,
many per round trip (a pipeline of ``XADD``). Nothing an execution does waits on Redis:
before each round it calls ``hold`` (a member's: wait, briefly, while its start path is
busy). When Redis is down, or the queue holds :data:`QUEUE_MAX` items already, the events are
logged and dropped (an ``execution.*`` event tells of a status already written in the
store; its id is deterministic, so receivers dedupe on it). :meth:`EventSender.close`
appends what is left (bounded in time).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable

import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Event
from workers.notify.events import EVENTS_MAXLEN

__all__ = ["BATCH", "QUEUE_MAX", "EventSender"]

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # events waiting to be appended; beyond, new ones are dropped (logged)
BATCH = 500  # events per round trip at most
_STOP = object()


class EventSender:
    """Appends events in a thread of its own (module docstring). ``send`` is thread-safe."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, hold: Callable[[], object] = lambda: None
    ) -> None:
        self.redis = client
        self._hold = hold
        self.keys = keys
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_MAX)
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="event-sender", daemon=True)
        self._thread.start()

    def send(self, event: Event) -> None:
        """Append ``event`` soon; never blocks (a full queue drops it, logged)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.warning("event %s dropped: %s events wait already", event.id, QUEUE_MAX)

    def send_later(self, build: Callable[[], Iterable[Event]], count: int) -> None:
        """Append the ``count`` events ``build`` makes, building them in the sender's thread;
        never blocks (a full queue drops them, logged). ``build`` must not raise."""
        try:
            self._queue.put_nowait(build)
        except queue.Full:
            self.dropped += count
            log.warning("%s event(s) dropped: %s items wait already", count, QUEUE_MAX)

    def close(self, timeout_s: float = 5.0) -> None:
        """Append what is queued (waits at most ``timeout_s``), then stop."""
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            batch: list[Event] = []
            item = self._queue.get()
            if item is not _STOP:
                self._hold()
            while item is not _STOP:
                if isinstance(item, Event):
                    batch.append(item)
                else:  # a send_later builder
                    batch.extend(item())  # type: ignore[operator]
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._append(batch)
            if item is _STOP:
                return

    def _append(self, batch: list[Event]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for event in batch:
            fields = {MESSAGE_FIELD: encode(event)}
            pipe.xadd(self.keys.events, fields, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self.dropped += len(batch)
            ids = ", ".join(e.id for e in batch[:5]) + (" …" if len(batch) > 5 else "")
            log.warning("%s event(s) not appended (%s): %s", len(batch), exc, ids)
            return
        for event in batch:
            log.debug("event %s emitted", event.id)
