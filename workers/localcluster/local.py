"""Run cluster processes (workers, members) as local child processes of one data directory.

Used by ``qwc demo`` and the tests' process harness; every child is a real ``qwc`` process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalProcesses", "fast_timings_env"]


def fast_timings_env(
    *, interval_s: float, inactive_s: float, dead_s: float, delay_s: float = 0.0
) -> dict[str, str]:
    """Environment overrides for the heartbeat timings (see the README's naming rule)."""
    return {
        "QWC_CLUSTERMODE_HEARTBEAT_INTERVAL": str(interval_s),
        "QWC_CLUSTERMODE_HEARTBEAT_DELAY": str(delay_s),
        "QWC_CLUSTERMODE_HEARTBEAT_CONSIDERINACTIVE": str(inactive_s),
        "QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD": str(dead_s),
    }


@dataclass
class LocalProcesses:
    """Child ``qwc`` processes sharing ``env``, logging to ``log_dir``; ``stop_all`` ends them."""

    env: Mapping[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``qwc <args>`` as ``label`` (unique), logging to ``<log_dir>/<label>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{label}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "-v", *args],
                env={**_without_qwc(os.environ), **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C in the terminal reaches only the parent
            )
        self.procs[label] = proc
        return proc

    def kill(self, label: str) -> None:
        """SIGKILL one child: the way a member dies at 3 a.m."""
        proc = self.procs[label]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every child still running, then SIGKILL what did not stop in ``timeout_s``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _without_qwc(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment less the user's QWC_* settings: children get only ``env``'s."""
    return {k: v for k, v in environ.items() if not k.startswith("QWC_")}
