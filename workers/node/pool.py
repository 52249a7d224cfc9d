"""A member's bounded execution pool: up to ``slots`` commands at once, one thread each.

The consumer (:mod:`workers.node.consumer`) hands it executions it has just started in the
store (:meth:`ExecutionPool.submit`, only while :meth:`ExecutionPool.free_slots` > 0). Each
runs in a slot thread: its command is spawned in a process group of its own
(:mod:`workers.node.groups`) that the watchdog is told about, its output is kept in a
bounded tail, and when the command has exited — and what it left behind in its group was
ended — the slot hands an :class:`workers.node.runner.Ended` to ``record`` and is free.

:meth:`ExecutionPool.end` is the one way to stop an execution early (abort, timeout, drain,
and later ``replace``): it remembers why (the status to record, or None when the caller
recorded the outcome itself), sends SIGTERM to the whole group, and SIGKILL after
``grace_s`` to a group still alive. An execution whose ``deadline_ms`` passes is ended
with status ``timedout``. One timer thread serves every deadline and every SIGKILL.

Times: ``clock_ms`` (epoch ms) for deadlines; ``grace_s`` in seconds.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from workers.node.groups import END_GRACE_S, end_groups, group_alive, signal_group, spawn
from workers.node.runner import OUTPUT_TAIL_BYTES, Ended, EndRequest, Invocation, OutputTail
from workers.store import StartedExecution

__all__ = ["TIMEDOUT", "ExecutionPool", "GroupRegistry", "Run"]

log = logging.getLogger(__name__)

TIMEDOUT = "timedout"
_CHUNK_BYTES = 65536


class GroupRegistry(Protocol):
    """Who else must know the live process groups (the watchdog)."""

    def add(self, pgid: int, execution_id: str) -> None: ...

    def remove(self, pgid: int) -> None: ...


@dataclass(frozen=True)
class Run:
    """An execution started in the store, and how to run it."""

    execution: StartedExecution
    invocation: Invocation


class _Timer:
    """One thread calling actions at monotonic times (deadlines, SIGKILL after a grace)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="pool-timer", daemon=True)
        self._thread.start()

    def after(self, delay_s: float, action: Callable[[], object]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), action))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5.0)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                _, _, action = heapq.heappop(self._heap)
            try:
                action()
            except Exception:
                log.exception("pool timer: an action failed")


class ExecutionPool:
    """``slots`` execution slots (module docstring). ``record`` is called in the slot
    thread with each :class:`Ended` (it should not raise; what it raises is logged);
    ``on_free`` when a slot becomes free. Thread-safe."""

    def __init__(
        self,
        slots: int,
        *,
        record: Callable[[Ended], object],
        groups: GroupRegistry | None = None,
        on_free: Callable[[], object] = lambda: None,
        grace_s: float = END_GRACE_S,
        output_bytes: int = OUTPUT_TAIL_BYTES,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._record = record
        self._groups = groups
        self._on_free = on_free
        self.grace_s = grace_s
        self._output_bytes = output_bytes
        self._clock_ms = clock_ms
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._cond = threading.Condition()
        self._running: dict[str, Run] = {}
        self._pgids: dict[str, int] = {}
        self._ending: dict[str, EndRequest] = {}
        self._threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="slot")
        self._timer = _Timer()

    def free_slots(self) -> int:
        """Slots not running anything now."""
        with self._cond:
            return self.slots - len(self._running)

    def running_ids(self) -> frozenset[str]:
        """The executions the pool holds now."""
        with self._cond:
            return frozenset(self._running)

    def submit(self, run: Run) -> None:
        """Run ``run`` in a free slot. Raises ``RuntimeError`` when none is free and
        ``ValueError`` when the execution runs here already."""
        eid = run.execution.id
        with self._cond:
            if eid in self._running:
                raise ValueError(f"execution {eid} is running in the pool already")
            if len(self._running) >= self.slots:
                raise RuntimeError("no free slot")
            self._running[eid] = run
        deadline_ms = run.invocation.deadline_ms
        if deadline_ms is not None:
            delay_s = max(0.0, (deadline_ms - self._clock_ms()) / 1000)
            self._timer.after(delay_s, lambda: self.end(eid, TIMEDOUT, "timeout"))
        self._threads.submit(self._slot, run)

    def end(self, execution_id: str, status: str | None, reason: str) -> bool:
        """End ``execution_id``'s command: its whole process group gets SIGTERM, and SIGKILL
        ``grace_s`` later if still alive; the slot then records ``status`` (None: nothing;
        the caller recorded the outcome). False when the pool does not hold it. The first
        end of an execution decides its status; later ones only signal again."""
        with self._cond:
            if execution_id not in self._running:
                return False
            self._ending.setdefault(execution_id, EndRequest(status, reason))
            pgid = self._pgids.get(execution_id)
        log.info("execution %s: ending its process group (%s)", execution_id, reason)
        if pgid is not None:
            self._terminate(execution_id, pgid)
        return True

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until nothing runs (True) or ``timeout_s`` passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running, timeout_s)

    def close(self) -> None:
        """Wait for the slots to finish (end them first), then stop the timer."""
        self._threads.shutdown(wait=True)
        self._timer.close()

    def _terminate(self, execution_id: str, pgid: int) -> None:
        signal_group(pgid, signal.SIGTERM)
        self._timer.after(self.grace_s, lambda: self._kill_if_still(execution_id, pgid))

    def _kill_if_still(self, execution_id: str, pgid: int) -> None:
        with self._cond:
            still = self._pgids.get(execution_id) == pgid  # not another group reusing the id
        if still and group_alive(pgid):
            log.warning(
                "execution %s: alive %.1f s after SIGTERM; killed", execution_id, self.grace_s
            )
            signal_group(pgid, signal.SIGKILL)

    def _slot(self, run: Run) -> None:
        eid = run.execution.id
        try:
            ended = self._execute(run)
            try:
                self._record(ended)
            except Exception:
                log.exception("execution %s: its outcome could not be recorded", eid)
        finally:
            with self._cond:
                self._running.pop(eid, None)
                self._ending.pop(eid, None)
                self._cond.notify_all()
            self._on_free()

    def _execute(self, run: Run) -> Ended:
        eid, inv = run.execution.id, run.invocation
        with self._cond:
            early = self._ending.get(eid)
        if early is not None:  # ended before it even started
            return Ended(run.execution, None, "", early)
        try:
            proc = spawn(inv.argv, {**self._base_env, **inv.env})
        except (OSError, ValueError) as exc:
            name = inv.argv[0] if inv.argv else ""
            return Ended(run.execution, None, f"cannot run {name!r}: {exc}")
        with self._cond:
            self._pgids[eid] = proc.pid
            early = self._ending.get(eid)
        if self._groups is not None:
            self._groups.add(proc.pid, eid)
        if early is not None:
            self._terminate(eid, proc.pid)
        tail = OutputTail(self._output_bytes)
        assert proc.stdout is not None
        with proc:
            while chunk := proc.stdout.read(_CHUNK_BYTES):
                tail.feed(chunk)
            exit_code = proc.wait()
        if group_alive(proc.pid):  # what it left behind: nothing outlives its execution
            end_groups([proc.pid], grace_s=self.grace_s)
        with self._cond:
            self._pgids.pop(eid, None)
            ending = self._ending.get(eid)
        if self._groups is not None:
            self._groups.remove(proc.pid)
        return Ended(run.execution, exit_code, tail.text(), ending)
