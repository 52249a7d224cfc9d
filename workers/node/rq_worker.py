"""A node's RQ worker, run in a child process so the node keeps its main thread for signals.

The child runs RQ's default ``Worker`` on the member's queue ``qwc-<member uuid>``; RQ forks
a work horse per job. The child leads its own process group (a Ctrl-C in the terminal reaches
only the node, which then stops the worker itself) and watches its parent: when the node
dies (SIGKILL), the worker stops within :data:`PARENT_CHECK_S` seconds and kills the work
horse with its command, instead of living on as an orphan: a dead member's executions are
recovered elsewhere (marked ``incomplete``, retried), so they must not run on here too.

Stopping (:meth:`RqWorkerProcess.stop`): SIGTERM, which is RQ's warm shutdown (the current
job finishes); after ``warm_s`` a second SIGTERM (cold shutdown: RQ kills the work horse);
SIGKILL as a last resort.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.process import BaseProcess

__all__ = ["PARENT_CHECK_S", "RqWorkerProcess", "queue_name"]

log = logging.getLogger(__name__)

PARENT_CHECK_S = 0.5
_COLD_S = 2.0


def queue_name(member_uuid: str) -> str:
    """The RQ queue of a member: ``qwc-<member uuid>``."""
    return f"qwc-{member_uuid}"


class RqWorkerProcess:
    """An RQ worker on one queue, in a forked child process.

    Start it before the node starts threads (it forks) and after the store's connection
    pool was disposed (so the child inherits no database connection).
    """

    def __init__(self, redis_url: str, queue: str, *, log_level: int = logging.WARNING) -> None:
        self._redis_url = redis_url
        self._queue = queue
        self._log_level = log_level
        self._proc: BaseProcess | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid once started."""
        return self._proc.pid if self._proc is not None else None

    def is_alive(self) -> bool:
        """True while the child runs."""
        return self._proc is not None and self._proc.is_alive()

    def start(self) -> None:
        """Fork the child and return at once (idempotent)."""
        if self._proc is not None:
            return
        ctx = multiprocessing.get_context("fork")
        self._proc = ctx.Process(
            target=_work,
            args=(self._redis_url, self._queue, self._log_level, os.getpid()),
            name=f"rq-{self._queue}",
        )
        self._proc.start()
        log.info("rq worker %s: started (pid %s)", self._queue, self._proc.pid)

    def restart_if_dead(self) -> int | None:
        """Start a new child when the previous one exited; returns the dead one's exit code,
        or None when it is running (or was never started)."""
        proc = self._proc
        if proc is None or proc.is_alive():
            return None
        proc.join()
        self._proc = None
        self.start()
        return proc.exitcode

    def stop(self, warm_s: float = 6.0) -> int | None:
        """Stop the child (see the module docstring); returns its exit code, None if never
        started. Waits at most about ``warm_s`` + 2 s (+ 1 s if SIGKILL was needed)."""
        proc = self._proc
        if proc is None:
            return None
        for sig, wait_s in ((signal.SIGTERM, warm_s), (signal.SIGTERM, _COLD_S)):
            if not proc.is_alive():
                break
            _signal(proc, sig)
            proc.join(wait_s)
        if proc.is_alive():
            log.warning("rq worker %s: did not stop; killing it", self._queue)
            proc.kill()
            proc.join(1.0)
        log.info("rq worker %s: stopped (exit %s)", self._queue, proc.exitcode)
        return proc.exitcode


def _signal(proc: BaseProcess, sig: signal.Signals) -> None:
    if proc.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def _work(redis_url: str, queue: str, log_level: int, parent_pid: int) -> None:
    """The child: its own process group, a parent watchdog, then RQ's work loop."""
    for sig in (signal.SIGTERM, signal.SIGINT):  # not the node's handlers until RQ's own
        signal.signal(sig, signal.SIG_DFL)
    os.setpgid(0, 0)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    from rq import Queue, Worker

    import workers.node.runner  # noqa: F401  (loaded once here, not in every work horse)
    from workers.bus.connect import connect

    connection = connect(redis_url, client_name=f"rq-{queue}")
    worker = Worker([Queue(queue, connection=connection)], connection=connection)
    _worker.append(worker)
    worker.work(logging_level=logging.getLevelName(log_level), with_scheduler=False)


_worker: list[object] = []  # the child's RQ worker, for the watchdog


def _watch_parent(parent_pid: int) -> None:
    """Once the node that started us is gone: SIGTERM ourselves (RQ takes no new job), then
    kill the work horse's process group (the running command with it)."""
    while os.getppid() == parent_pid:
        threading.Event().wait(PARENT_CHECK_S)
    logging.getLogger(__name__).warning("rq worker: node %s is gone; stopping", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(0.1)  # let RQ's handler run first: no new job after the kill
    for worker in _worker:
        if getattr(worker, "horse_pid", 0):
            worker.kill_horse()  # type: ignore[attr-defined]
