"""Setting up the demo cluster: timings, config file, processes, jobs; and cleaning up.

Every member and worker is a real ``qwc`` process started through
:class:`workers.localcluster.local.LocalProcesses`. A node has child processes of its
own: its watchdog and the commands of its executions. When the node is SIGKILLed its
watchdog ends the commands and stops by itself; when it is stopped, it drains for
``drainTimeout`` (one heartbeat interval in the demo) and closes its watchdog.
:func:`reap_orphans` makes sure they are all gone before the demo returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid as uuidlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.properties import env_name
from workers.localcluster.cluster_plan import topology
from workers.localcluster.local import LocalProcesses
from workers.store import Db, create_job, insert_execution

__all__ = [
    "DEMO_COMMAND",
    "DEMO_SCHEDULE",
    "LONG_JOB_NAME",
    "DemoTimings",
    "add_jobs",
    "add_long_job",
    "child_pids",
    "choose_victim",
    "demo_members",
    "reap_orphans",
    "start_cluster",
    "start_long_run",
]

log = logging.getLogger(__name__)

DEMO_SCHEDULE = "* * * * * *"  # every second (6 fields, seconds first)
DEMO_COMMAND = ("true",)
DEMO_PROJECT = "demo"
LONG_JOB_NAME = "long-running"
LONG_JOB_RETRIES = 2
WORKER_REPLICAS = 2

_CM = "qwcontrol.clusterMode."
_HEADER = "# written by `qwc demo`: the seed's keys with demo timings (seconds)\n"


@dataclass(frozen=True)
class DemoTimings:
    """The demo's timings in seconds, all derived from the heartbeat interval."""

    interval_s: float
    inactive_s: float
    dead_s: float
    delay_s: float
    sleep_s: float
    long_run_s: float  # how long the long-running job runs
    retry_delay_s: float  # its retry delay

    @classmethod
    def from_interval(cls, interval_s: float) -> DemoTimings:
        """considerInactive 4x, considerDead 8x, autotakeover and recoverExecutions delay
        4x and sleep 40x; the long-running job runs 12x, its retry delay is 2x."""
        i = interval_s
        return cls(
            interval_s=i,
            inactive_s=4 * i,
            dead_s=8 * i,
            delay_s=4 * i,
            sleep_s=40 * i,
            long_run_s=12 * i,
            retry_delay_s=2 * i,
        )

    def keys(self) -> dict[str, str]:
        """The demo's settings, by property key (a stopping node drains one interval: the
        demo stops everything at its end)."""
        return {
            _CM + "heartbeat.interval": f"{self.interval_s:g}",
            _CM + "heartbeat.delay": "0",
            _CM + "heartbeat.considerInactive": f"{self.inactive_s:g}",
            _CM + "heartbeat.considerDead": f"{self.dead_s:g}",
            _CM + "autotakeover.enabled": "true",
            _CM + "autotakeover.policy": "any",
            _CM + "autotakeover.delay": f"{self.delay_s:g}",
            _CM + "autotakeover.sleep": f"{self.sleep_s:g}",
            _CM + "recoverExecutions.enabled": "true",
            _CM + "recoverExecutions.policy": "any",
            _CM + "recoverExecutions.delay": f"{self.delay_s:g}",
            _CM + "recoverExecutions.sleep": f"{self.sleep_s:g}",
            _CM + "remoteExec.process.interval": f"{self.interval_s:g}",
            "qwcontrol.executions.drainTimeout": f"{self.interval_s:g}",
        }

    def properties(self) -> str:
        """The text of the demo's ``qwcontrol-config.properties``."""
        return _HEADER + "".join(f"{k} = {v}\n" for k, v in self.keys().items())

    def env(self) -> dict[str, str]:
        """The same settings as environment variables, for the demo's processes: the
        environment wins over the file, so a ``QWC_CLUSTERMODE_*`` variable of the user's
        shell must not slow the demo down or turn autotakeover off."""
        return {env_name(k): v for k, v in self.keys().items()}


def demo_members(count: int) -> dict[str, str]:
    """``count`` fresh member uuids, each with its name ``node-<i>`` (from 1), in order."""
    return {str(uuidlib.uuid4()): f"node-{i}" for i in range(1, count + 1)}


def start_cluster(procs: LocalProcesses, members: dict[str, str]) -> None:
    """Start two liveness, two takeover and two recovery workers, and one node per member
    (no manager: the demo draws the cluster itself)."""
    n = WORKER_REPLICAS
    for spec in topology(members, liveness=n, takeover=n, recovery=n, manager=None):
        procs.start(spec.label, *spec.args)


def add_jobs(db: Db, owners: Sequence[str], count: int, *, now_ms: int) -> dict[str, str]:
    """Create ``count`` jobs firing every second, owned round-robin by ``owners`` (each job
    is created "by" its owner: the last modifier owns). Returns job id -> owner uuid."""
    created: dict[str, str] = {}
    for i in range(count):
        owner = owners[i % len(owners)]
        job = create_job(
            db,
            project=DEMO_PROJECT,
            group_name="",
            name=f"job-{i + 1:03d}",
            command=DEMO_COMMAND,
            schedule=DEMO_SCHEDULE,
            modified_by=owner,
            now_ms=now_ms,
        )
        created[job.id] = owner
    return created


def add_long_job(db: Db, owner: str, timings: DemoTimings, *, now_ms: int) -> str:
    """Create the job ``long-running`` (``sleep`` for ``timings.long_run_s``, no schedule,
    2 retries after ``timings.retry_delay_s``), owned by ``owner``; returns its id."""
    return create_job(
        db,
        project=DEMO_PROJECT,
        group_name="",
        name=LONG_JOB_NAME,
        command=("sleep", f"{timings.long_run_s:g}"),
        schedule=None,
        modified_by=owner,
        now_ms=now_ms,
        retry_count=LONG_JOB_RETRIES,
        retry_delay_s=timings.retry_delay_s,
    ).id


def start_long_run(db: Db, job_id: str, member_uuid: str, *, now_ms: int) -> str:
    """Run ``job_id`` once on ``member_uuid`` (a manual execution, queued there by the
    member within a poll); returns the execution id."""
    return insert_execution(
        db, job_id=job_id, member_uuid=member_uuid, trigger="manual", fire_ms=now_ms, now_ms=now_ms
    )


def choose_victim(owners: dict[str, str], members: Sequence[str]) -> str:
    """The member to kill: the one owning the most jobs, the last in ``members`` on a tie."""
    counts = {m: 0 for m in members}
    for owner in owners.values():
        counts[owner] = counts.get(owner, 0) + 1
    return max(reversed(members), key=lambda m: counts[m])


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (Linux ``/proc``; empty elsewhere)."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(p) for p in children.read_text().split())
    return found


def reap_orphans(pids: Iterable[int], *, timeout_s: float = 10.0) -> list[int]:
    """Wait up to ``timeout_s`` for processes that are not our children (a node's watchdog
    and commands) to end; SIGKILL those still running. Returns the pids that had to be
    killed."""
    waiting = [p for p in pids if _running(p)]
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        time.sleep(0.1)
        waiting = [p for p in waiting if _running(p)]
    for pid in waiting:
        log.warning("demo: process %s outlived its killed parent; killing it", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return waiting


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.rsplit(") ", 1)[-1].startswith("Z")
