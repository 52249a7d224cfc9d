"""Supervising a local cluster: start every process of a topology, restart what exits
unasked, stop them all on request.

Used by ``qwc cluster up``. The decisions (restart, or give up) are
:func:`workers.cluster_plan.on_exit`'s; this module only polls the child processes and
acts. Every child is a real ``qwc`` process in a session of its own (Ctrl-C in the
terminal reaches only the supervisor, which then stops each child with SIGTERM).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from workers.cluster_plan import Action, ProcessSpec, on_exit
from workers.local import LocalProcesses

__all__ = ["POLL_S", "STOP_TIMEOUT_S", "Supervisor", "child_env", "stop_timeout_s"]

log = logging.getLogger(__name__)

POLL_S = 0.2
STOP_TIMEOUT_S = 10.0  # after SIGTERM (+ drainTimeout, see stop_timeout_s) before SIGKILL


def stop_timeout_s(drain_timeout_s: float) -> float:
    """How long a process gets after SIGTERM before SIGKILL: a node drains for up to
    ``drain_timeout_s`` (``qwcontrol.executions.drainTimeout``), then needs a few seconds
    to end what is left and hand it back; every other process stops within
    :data:`STOP_TIMEOUT_S`."""
    return drain_timeout_s + STOP_TIMEOUT_S


def child_env(environ: Mapping[str, str], config_path: str | None) -> dict[str, str]:
    """The environment of the cluster's processes: this process's ``QWC_*`` variables
    (settings, data directory, log format), and ``QWC_CONFIG`` when a config file was
    named with ``--config`` (as an absolute path)."""
    env = {k: v for k, v in environ.items() if k.startswith("QWC_")}
    if config_path:
        env["QWC_CONFIG"] = config_path
    return env


class Supervisor:
    """Runs ``specs`` through ``procs`` until asked to stop, restarting what exits."""

    def __init__(
        self,
        procs: LocalProcesses,
        specs: Sequence[ProcessSpec],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.procs = procs
        self.specs = {s.label: s for s in specs}
        self.clock = clock
        self.started_s: dict[str, float] = {}
        self.quick_exits: dict[str, int] = {}
        self.restarts = 0

    def start_all(self) -> None:
        """Start every process of the topology, in order."""
        for spec in self.specs.values():
            self._start(spec)

    def run(self, stop: threading.Event, poll_s: float = POLL_S) -> str | None:
        """Watch the processes until ``stop`` is set (returns None) or one of them must not
        be restarted (returns why). Restarts every other process that exits."""
        while not stop.wait(poll_s):
            for spec in self.specs.values():
                why = self._check(spec)
                if why is not None:
                    return why
        return None

    def _check(self, spec: ProcessSpec) -> str | None:
        """Restart ``spec``'s process if it exited and may be restarted; else say why not."""
        code = self.procs.procs[spec.label].poll()
        if code is None:
            return None
        uptime_s = self.clock() - self.started_s[spec.label]
        action, quick = on_exit(code, uptime_s, self.quick_exits.get(spec.label, 0))
        self.quick_exits[spec.label] = quick
        if action is Action.GIVE_UP:
            return f"{spec.label} exited with status {code} after {uptime_s:.1f} s"
        log.warning("cluster: %s exited with status %s; restarting it", spec.label, code)
        self._start(spec)
        self.restarts += 1
        return None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, int | None]:
        """SIGTERM every process, SIGKILL those still running after ``timeout_s``; returns
        each one's exit status (negative: the signal that ended it)."""
        self.procs.stop_all(timeout_s)
        return {label: proc.returncode for label, proc in self.procs.procs.items()}

    def _start(self, spec: ProcessSpec) -> None:
        proc = self.procs.start(spec.label, *spec.args)
        self.started_s[spec.label] = self.clock()
        log.info("cluster: started %s (pid %s): qwc %s", spec.label, proc.pid, " ".join(spec.args))
