"""A member's bounded execution pool: up to ``slots`` executions at once, one thread each.

The consumer (:mod:`workers.node.consumer`) hands it executions it has just started in the
store (:meth:`ExecutionPool.submit`, only while :meth:`ExecutionPool.free_slots` > 0),
having said first which it is about to start (:meth:`ExecutionPool.expect`): an end asked
for one of those before its hand-over (an abort, a replacement) is kept, and it never
starts. Each
runs in a slot thread, as :func:`workers.node.executors.prepare` says for its job's
executor:

* a :class:`~workers.node.executors.ProcessRun` (``command``, ``shell``, ``python``) is
  spawned with its own environment in a process group of its own
  (:mod:`workers.node.groups`) that the watchdog is told about; its output goes into an
  :class:`~workers.node.output.OutputCollector` of ``output_max_bytes`` (head and tail);
  the job's ``timeout_s``, counted from its start, ends the group (status ``timedout``);
  when the command has exited, what it left behind in its group is ended too;
* an :class:`~workers.node.executors.HttpRun` is called in the slot thread with the job's
  timeout, and stops at the next chunk of the answer when ended;
* a job whose executor cannot be prepared (a corrupt row) is ``failed`` with the reason.

The slot then hands an :class:`workers.node.runner.Ended` to ``record`` and is free.

:meth:`ExecutionPool.end` is the one way to stop an execution early (abort, timeout, drain,
``replace`` through :meth:`ExecutionPool.end_replaced`): it remembers why (the status to
record, or None when the caller recorded the outcome itself), sends SIGTERM to the whole
group (or cancels the HTTP call), and SIGKILL after ``grace_s`` to a group still alive.
One timer thread serves every deadline and every SIGKILL.

Times: ``clock_ms`` (epoch ms) for deadlines; ``grace_s`` in seconds.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from workers.node.executors import (
    ExecutionIdentity,
    HttpRun,
    ProcessRun,
    inherited_env,
    prepare,
    timed_out_reason,
)
from workers.node.groups import (
    END_GRACE_S,
    end_groups,
    group_alive,
    read_output,
    signal_group,
    spawn,
)
from workers.node.output import DEFAULT_OUTPUT_MAX_BYTES, OutputCollector
from workers.node.runner import Ended, EndRequest
from workers.store import Admitted, StartedExecution

__all__ = ["TIMEDOUT", "ExecutionPool", "GroupRegistry"]

log = logging.getLogger(__name__)

TIMEDOUT = "timedout"
_COMPACT_AT = 64  # the timer drops cancelled entries once they are half of at least this

_Handle = list[Callable[[], object] | None]  # a timer entry's action; None once cancelled


class GroupRegistry(Protocol):
    """Who else must know the live process groups (the watchdog)."""

    def add(self, pgid: int, execution_id: str) -> None: ...

    def remove(self, pgid: int) -> None: ...


class _Timer:
    """One thread calling actions at monotonic times (deadlines, SIGKILL after a grace).
    A cancelled action is dropped; the heap is compacted when most of it is cancelled, so
    long timeouts of executions that ended early do not pile up."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Handle]] = []
        self._cancelled = 0
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="pool-timer", daemon=True)
        self._thread.start()

    def after(self, delay_s: float, action: Callable[[], object]) -> _Handle:
        """Call ``action`` in ``delay_s`` seconds; returns a handle for :meth:`cancel`."""
        handle: _Handle = [action]
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), handle))
            self._cond.notify()
        return handle

    def cancel(self, handle: _Handle) -> None:
        with self._cond:
            if handle[0] is None:
                return
            handle[0] = None
            self._cancelled += 1
            if len(self._heap) >= _COMPACT_AT and 2 * self._cancelled > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2][0] is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

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
                _, _, handle = heapq.heappop(self._heap)
                action, handle[0] = handle[0], None
                if action is None:
                    self._cancelled = max(0, self._cancelled - 1)
                    continue
            try:
                action()
            except Exception:
                log.exception("pool timer: an action failed")


class ExecutionPool:
    """``slots`` execution slots (module docstring). ``record`` is called in the slot
    thread with each :class:`Ended` (it should not raise; what it raises is logged);
    ``on_free`` when a slot becomes free. ``base_env`` is the environment executions start
    from (default: the member's as it is when the pool is made, read once; its ``QWC_*``
    variables are left out). Thread-safe."""

    def __init__(
        self,
        slots: int,
        *,
        record: Callable[[Ended], object],
        groups: GroupRegistry | None = None,
        on_free: Callable[[], object] = lambda: None,
        grace_s: float = END_GRACE_S,
        output_max_bytes: int = DEFAULT_OUTPUT_MAX_BYTES,
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
        self._output_max_bytes = output_max_bytes
        self._clock_ms = clock_ms
        self._base_env = inherited_env(base_env)  # os.environ per execution cost ~0.1 ms
        self._cond = threading.Condition()
        self._running: dict[str, StartedExecution] = {}
        self._pgids: dict[str, int] = {}
        self._cancels: dict[str, threading.Event] = {}
        self._ending: dict[str, EndRequest] = {}
        self._expected: set[str] = set()  # about to be handed over (the consumer's)
        self._threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="slot")
        self._timer = _Timer()

    def free_slots(self) -> int:
        """Slots not running anything now."""
        with self._cond:
            return self.slots - len(self._running)

    def wait_free(self, count: int, timeout_s: float) -> int:
        """Wait until at least ``count`` slots are free, at most ``timeout_s``; returns how
        many are free."""
        with self._cond:
            self._cond.wait_for(lambda: self.slots - len(self._running) >= count, timeout_s)
            return self.slots - len(self._running)

    def started_by(self, at_ms: int) -> int:
        """How many of the running executions started at ``at_ms`` or before (epoch ms, the
        store's ``started_ms``)."""
        with self._cond:
            return sum(1 for e in self._running.values() if e.started_ms <= at_ms)

    def running_ids(self) -> frozenset[str]:
        """The executions the pool holds now."""
        with self._cond:
            return frozenset(self._running)

    def held_ids(self) -> frozenset[str]:
        """The executions the pool holds or expects (:meth:`expect`): those the member's
        lost-job check must not take for lost."""
        with self._cond:
            return frozenset(self._running) | self._expected

    def expect(self, execution_ids: Collection[str]) -> None:
        """These executions are about to be started in the store and handed over: an end
        asked for one of them meanwhile is kept (:meth:`end` returns True), and it is
        recorded as asked when it is handed over, never run. Call :meth:`forget` with those
        that are not handed over after all."""
        with self._cond:
            self._expected.update(execution_ids)

    def forget(self, execution_ids: Collection[str]) -> None:
        """Executions :meth:`expect` named that will not be handed over (not started)."""
        with self._cond:
            for eid in execution_ids:
                if eid in self._expected:
                    self._expected.discard(eid)
                    self._ending.pop(eid, None)

    def submit(self, execution: StartedExecution) -> None:
        """Run ``execution`` in a free slot. Raises ``RuntimeError`` when none is free and
        ``ValueError`` when the execution runs here already."""
        eid = execution.id
        with self._cond:
            if eid in self._running:
                raise ValueError(f"execution {eid} is running in the pool already")
            if len(self._running) >= self.slots:
                raise RuntimeError("no free slot")
            self._expected.discard(eid)
            self._running[eid] = execution
        self._threads.submit(self._slot, execution)

    def end(self, execution_id: str, status: str | None, reason: str) -> bool:
        """End ``execution_id``: its whole process group gets SIGTERM, and SIGKILL
        ``grace_s`` later if still alive (an HTTP call stops at its next chunk); the slot
        then records ``status`` (None: nothing; the caller recorded the outcome). An
        execution expected (:meth:`expect`) and not handed over yet never starts. False when
        the pool neither holds nor expects it. The first end of an execution decides its
        status; later ones only signal again."""
        with self._cond:
            if execution_id not in self._running and execution_id not in self._expected:
                return False
            self._ending.setdefault(execution_id, EndRequest(status, reason))
            pgid = self._pgids.get(execution_id)
            cancel = self._cancels.get(execution_id)
        log.info("execution %s: ending it (%s)", execution_id, reason)
        if cancel is not None:
            cancel.set()
        if pgid is not None:
            self._terminate(execution_id, pgid)
        return True

    def end_replaced(self, admitted: Admitted) -> None:
        """End at once those of the executions ``admitted`` replaced (policy ``replace``)
        that run in this pool, recording nothing: the store has them ``aborted`` already.
        Those on other members are ended by their watchdogs."""
        for old in admitted.aborted:
            self.end(old, None, admitted.abort_reason or "replaced")

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

    def _slot(self, execution: StartedExecution) -> None:
        eid = execution.id
        try:
            ended = dataclasses.replace(self._execute(execution), ended_ms=self._clock_ms())
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

    def _execute(self, execution: StartedExecution) -> Ended:
        with self._cond:
            early = self._ending.get(execution.id)
        if early is not None:  # ended before it even started
            return Ended(execution, early.status, reason=early.reason)
        try:
            work = prepare(execution, ExecutionIdentity.of(execution), base_env=self._base_env)
        except ValueError as exc:
            return Ended(execution, "failed", reason=f"cannot run job {execution.job_id}: {exc}")
        if isinstance(work, HttpRun):
            return self._call(execution, work)
        return self._spawn(execution, work)

    def _call(self, execution: StartedExecution, work: HttpRun) -> Ended:
        """Make an HTTP call; an end request cancels it (at its next chunk)."""
        eid, cancel = execution.id, threading.Event()
        with self._cond:
            self._cancels[eid] = cancel
            if eid in self._ending:
                cancel.set()
        try:
            outcome = work.run(
                max_bytes=self._output_max_bytes, timeout_s=execution.timeout_s, cancel=cancel
            )
        finally:
            with self._cond:
                self._cancels.pop(eid, None)
                ending = self._ending.get(eid)
        if ending is not None and (outcome.stopped or ending.status is None):
            return Ended(execution, ending.status, outcome.output, reason=ending.reason)
        return Ended(execution, outcome.status, outcome.output, reason=outcome.reason)

    def _spawn(self, execution: StartedExecution, work: ProcessRun) -> Ended:
        """Run a process in a group of its own until it exits; its deadline ends the group."""
        eid = execution.id
        try:
            proc = spawn(work.argv, work.env)
        except (OSError, ValueError) as exc:
            name = work.argv[0] if work.argv else ""
            return Ended(execution, "failed", reason=f"cannot run {name!r}: {exc}")
        with self._cond:
            self._pgids[eid] = proc.pid
            early = self._ending.get(eid)
        if self._groups is not None:
            self._groups.add(proc.pid, eid)
        if early is not None:
            self._terminate(eid, proc.pid)
        deadline = self._deadline(execution)
        output = OutputCollector(self._output_max_bytes)
        with proc:
            read_output(proc, output.feed, grace_s=self.grace_s)
            exit_code = proc.wait()
        if deadline is not None:
            self._timer.cancel(deadline)
        if group_alive(proc.pid):  # what it left behind: nothing outlives its execution
            end_groups([proc.pid], grace_s=self.grace_s)
        with self._cond:
            self._pgids.pop(eid, None)
            ending = self._ending.get(eid)
        if self._groups is not None:
            self._groups.remove(proc.pid)
        if ending is not None:
            return Ended(execution, ending.status, output.text(), exit_code, ending.reason)
        status = "succeeded" if exit_code == 0 else "failed"
        return Ended(execution, status, output.text(), exit_code)

    def _deadline(self, execution: StartedExecution) -> _Handle | None:
        """End ``execution`` with ``timedout`` at its job's timeout after its start."""
        timeout_s = execution.timeout_s
        if timeout_s is None:
            return None
        due_ms = execution.started_ms + round(timeout_s * 1000)
        delay_s = max(0.0, (due_ms - self._clock_ms()) / 1000)
        reason = timed_out_reason(timeout_s)
        return self._timer.after(delay_s, lambda: self.end(execution.id, TIMEDOUT, reason))
