"""The takeover step of deploy/smoke: jobs of one node fire; SIGKILL of its container; its
jobs taken over once and fired by the others. Read with ``qwc`` inside a container."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .checks import Report, wait_for
from .compose import Compose
from .host import log

__all__ = ["JOB_PROJECT", "Takeover", "check_fired_once", "executions", "fired", "takeover"]

TAKEOVER_TIMEOUT_S = 420.0
FIRE_TIMEOUT_S = 120.0
JOB_PROJECT = "qwc-smoke"
EVERY_5_S = "*/5 * * * * *"


@dataclass(frozen=True)
class Takeover:
    """What the takeover step set up and saw, for the later steps."""

    victim: str
    victim_uuid: str
    jobs: tuple[str, ...]
    decided_ms: int


def takeover(compose: Compose, report: Report, qwc_service: str) -> Takeover:
    """Jobs of one node fire; SIGKILL of its container; its jobs taken over once (one
    committed takeover moving all of them) and fired by the other nodes, every fire time
    once. Checked with ``qwc`` inside ``qwc_service``'s container."""
    nodes = sorted(
        (s, c["Config"]["Cmd"])
        for s, c in compose.containers().items()
        if c["Config"]["Cmd"][:1] == ["node"]
    )
    names = {cmd[cmd.index("--uuid") + 1]: name for name, cmd in nodes}
    victim, cmd = nodes[0]
    victim_uuid = cmd[cmd.index("--uuid") + 1]
    nonce = uuid.uuid4().hex[:8]
    jobs = tuple(
        compose.qwc(
            qwc_service,
            "jobs",
            "add",
            f"smoke-{nonce}-{i}",
            "--project",
            JOB_PROJECT,
            "--command",
            "true",
            "--schedule",
            EVERY_5_S,
            "--as",
            victim_uuid,
        )["id"]
        for i in (1, 2)
    )
    log(f"takeover: 2 jobs on {victim} ({victim_uuid}), every 5 s; waiting for their fires")
    wait_for(
        f"both jobs fired by {victim}",
        lambda: fired(compose, qwc_service, jobs, lambda e: e["member_uuid"] == victim_uuid),
        FIRE_TIMEOUT_S,
    )
    killed_at = time.time()
    log(f"takeover: SIGKILL {victim}")
    compose("kill", "-s", "SIGKILL", victim)
    row = wait_for(
        f"a committed takeover of {victim}",
        lambda: _committed(compose, qwc_service, victim_uuid),
        TAKEOVER_TIMEOUT_S,
    )
    decided_ms = int(row["decided_ms"])
    wait_for(
        "the moved jobs fired by the other nodes",
        lambda: fired(
            compose,
            qwc_service,
            jobs,
            lambda e: e["member_uuid"] != victim_uuid and e["fire_ms"] > decided_ms,
        ),
        FIRE_TIMEOUT_S,
    )
    rows = [t for t in compose.qwc(qwc_service, "takeovers") if t["dead_uuid"] == victim_uuid]
    owners = {
        j["id"]: j for j in compose.qwc(qwc_service, "jobs", "list", "--project", JOB_PROJECT)
    }
    state = compose.containers()[victim]["State"]
    moved_after_s = decided_ms / 1000 - killed_at
    destinations = ", ".join(f"{n} to {names.get(u, u)}" for u, n in row["destinations"].items())
    report.check(
        "takeover",
        len(rows) == 1
        and row["jobs_moved"] == len(jobs)
        and state["ExitCode"] == 137
        and not state["Running"]
        and all(
            owners[j]["owner_uuid"] != victim_uuid and owners[j]["owner_epoch"] == 2 for j in jobs
        ),
        f"{victim} SIGKILLed (exit {state['ExitCode']}, not restarted); {len(rows)} takeover "
        f"committed {moved_after_s:.0f} s later: {destinations}",
    )
    report.figures["takeover"] = (
        f"{victim} SIGKILLed; its {len(jobs)} jobs moved once, {moved_after_s:.0f} s later "
        f"({destinations}), and fired there"
    )
    check_fired_once(compose, report, qwc_service, jobs, "takeover: every fire time once")
    return Takeover(victim, victim_uuid, jobs, decided_ms)


def executions(compose: Compose, service: str, job: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = compose.qwc(
        service, "executions", "--job", job, "--limit", "10000"
    )
    return rows


def fired(
    compose: Compose, service: str, jobs: tuple[str, ...], where: Callable[[dict[str, Any]], bool]
) -> bool | None:
    for job in jobs:
        if not any(
            e["status"] == "succeeded" and where(e) for e in executions(compose, service, job)
        ):
            return None
    return True


def _committed(compose: Compose, service: str, dead_uuid: str) -> dict[str, Any] | None:
    for row in compose.qwc(service, "takeovers"):
        if row["dead_uuid"] == dead_uuid and row["outcome"] == "committed":
            return dict(row)
    return None


def check_fired_once(
    compose: Compose, report: Report, service: str, jobs: tuple[str, ...], name: str
) -> int:
    total = 0
    twice: list[str] = []
    for job in jobs:
        runs = [e for e in executions(compose, service, job) if e["trigger"] == "schedule"]
        total += len(runs)
        twice += [f"{job}@{ms}" for ms, n in Counter(e["fire_ms"] for e in runs).items() if n > 1]
    report.check(name, not twice, f"{total} scheduled executions, fired twice: {twice or 'none'}")
    return total
