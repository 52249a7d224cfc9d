"""The recorder: writes the outcomes of a member's executions, many per transaction.

The pool's slots hand it each :class:`workers.node.runner.Ended` and are free at once; one
thread writes everything that arrived meanwhile in one transaction
(:func:`workers.node.runner.record_outcomes`: one conditional finish statement for all,
and the retry of a failed run in the same transaction as its finish). Before each batch it
calls ``hold`` (the node's: wait, briefly, while the start path is busy —
:meth:`workers.node.consumer.Quiet.hold`); each outcome carries the time its
execution ended, so holding changes when it is written, never what. A transient store
error keeps the batch and retries it with logged backoff; an outcome still not written
:data:`GIVE_UP_S` after it arrived is logged and dropped (the execution stays ``running``
in the store: a recovery or the member's next start cleanup settles it).
:meth:`Recorder.close` writes what is left. Once a batch is written, ``on_recorded`` gets
the outcomes it wrote (the member's ``execution.*`` events: :mod:`workers.node.tell`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from workers.bus.retry import is_transient
from workers.node.runner import Ended, Recorded, record_outcomes
from workers.store import Store

__all__ = ["BATCH", "GIVE_UP_S", "Recorder"]

log = logging.getLogger(__name__)

BATCH = 200  # outcomes per transaction at most
GIVE_UP_S = 60.0
_MAX_BACKOFF_S = 2.0
_STOP = object()


class Recorder:
    """Records outcomes in batches (module docstring). ``put`` is thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        clock_ms: Callable[[], int],
        on_recorded: Callable[[Sequence[Recorded], int], object] = lambda done, at_ms: None,
        hold: Callable[[], object] = lambda: None,
    ) -> None:
        self.store = store
        self._hold = hold
        self._clock_ms = clock_ms
        self._on_recorded = on_recorded
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._thread.start()

    def put(self, ended: Ended) -> None:
        """Record ``ended`` soon."""
        self._queue.put((ended, time.monotonic()))

    def close(self, timeout_s: float = GIVE_UP_S) -> None:
        """Write what is queued, then stop (waits at most ``timeout_s``)."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            batch = [] if first is _STOP else [first]
            stopping = first is _STOP
            if not stopping:
                self._hold()
            while not stopping and len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stopping = item is _STOP
                if not stopping:
                    batch.append(item)
            if batch:
                self._write([b for b in batch if isinstance(b, tuple)])
            if stopping:
                return

    def _write(self, batch: list[tuple[Ended, float]]) -> None:
        delay_s = 0.05
        while True:
            now_ms = self._clock_ms()
            try:
                done = record_outcomes(self.store, [e for e, _ in batch], now_ms=now_ms)
            except Exception as exc:
                if not is_transient(exc):
                    if len(batch) > 1:  # one bad outcome must not drop the others
                        for one in batch:
                            self._write([one])
                        return
                    log.exception("execution %s: outcome not recorded", batch[0][0].execution.id)
                    return
                oldest_s = min(at for _, at in batch)
                if time.monotonic() - oldest_s > GIVE_UP_S:
                    ids = ", ".join(e.execution.id for e, _ in batch)
                    log.error("outcomes not recorded after %.0f s (%s): %s", GIVE_UP_S, exc, ids)
                    return
                log.warning("outcomes: store lost (%s); retry in %.2fs", exc, delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, _MAX_BACKOFF_S)
                continue
            try:
                self._on_recorded(done, now_ms)
            except Exception:
                log.exception("outcomes recorded; telling them failed")
            return
