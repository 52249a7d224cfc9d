"""The stop and restart steps of deploy/smoke: ``docker-compose stop`` ends every service
cleanly within its grace; ``docker-compose up`` again keeps the data and fires on."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from .checks import Report, start, wait_for
from .compose import Compose
from .files import REDIS
from .host import log
from .takeover import FIRE_TIMEOUT_S, JOB_PROJECT, Takeover, check_fired_once, executions, fired

__all__ = ["Snapshot", "check_stop", "restart", "snapshot"]

MARKER_KEY = "qwc-smoke:marker"
DOCKER_STOP_DEFAULT_S = 10.0


def check_stop(compose: Compose, report: Report) -> dict[str, str]:
    """``docker-compose stop``: every running service exits 0 within its stop grace
    (``stop_grace_period``, else Docker's 10 s), with no SIGKILL. Returns the exit codes."""
    before = compose.containers()
    running = sorted(s for s, c in before.items() if c["State"]["Running"])
    since = time.time() - 1
    log("stop: docker-compose stop")
    compose("stop", timeout_s=300)
    events = compose.events(since, time.time() + 1)
    after = compose.containers()
    codes: dict[str, str] = {}
    for name in running:
        c = after[name]
        grace_s = float(c["Config"].get("StopTimeout") or DOCKER_STOP_DEFAULT_S)
        mine = [e for e in events if e["Actor"]["ID"] == c["Id"]]
        kills = [e for e in mine if e["Action"] == "kill"]
        dies = [e for e in mine if e["Action"] == "die"]
        took_s = (dies[-1]["timeNano"] - kills[0]["timeNano"]) / 1e9 if kills and dies else None
        killed = any(e["Actor"]["Attributes"].get("signal") == "9" for e in kills)
        code = c["State"]["ExitCode"]
        codes[name] = f"{code} in {took_s:.1f} s" if took_s is not None else str(code)
        report.check(
            f"stop {name}",
            code == 0 and took_s is not None and took_s <= grace_s and not killed,
            f"exit {code} {took_s if took_s is None else round(took_s, 1)} s after signal "
            f"{kills[0]['Actor']['Attributes'].get('signal') if kills else '?'} "
            f"(grace {grace_s:.0f} s){', SIGKILLed' if killed else ''}",
        )
    return codes


@dataclass(frozen=True)
class Snapshot:
    """What is there before the stop, to compare with after the restart."""

    executions: dict[str, int]
    marker: str


def snapshot(compose: Compose, qwc_service: str, moved: Takeover) -> Snapshot:
    """The moved jobs' execution counts, and a value written to Redis."""
    marker = uuid.uuid4().hex
    _redis_cli(compose, "SET", MARKER_KEY, marker)
    counts = {j: len(executions(compose, qwc_service, j)) for j in moved.jobs}
    return Snapshot(counts, marker)


def _redis_cli(compose: Compose, *args: str) -> str:
    script = 'REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli "$@"'
    return compose("exec", "-T", REDIS, "sh", "-c", script, "redis-cli", *args).stdout.strip()


def restart(
    compose: Compose, report: Report, qwc_service: str, moved: Takeover, before: Snapshot
) -> None:
    """``docker-compose up -d`` again: healthy, migrate first again, and the data kept
    (the jobs and their owners, the takeover, the executions, the Redis marker); the moved
    jobs fire again, still once per fire time."""
    restarted_ms = time.time() * 1000
    start(compose, report, "second up")
    owners = {
        j["id"]: j for j in compose.qwc(qwc_service, "jobs", "list", "--project", JOB_PROJECT)
    }
    rows = [t for t in compose.qwc(qwc_service, "takeovers") if t["dead_uuid"] == moved.victim_uuid]
    after = {j: len(executions(compose, qwc_service, j)) for j in moved.jobs}
    kept = _redis_cli(compose, "GET", MARKER_KEY)
    report.check(
        "data kept",
        all(j in owners and owners[j]["owner_uuid"] != moved.victim_uuid for j in moved.jobs)
        and len(rows) == 1
        and all(after[j] >= before.executions[j] for j in moved.jobs)
        and kept == before.marker,
        f"jobs {len([j for j in moved.jobs if j in owners])}/{len(moved.jobs)} with their new "
        f"owners, takeovers of {moved.victim} {len(rows)}, executions "
        f"{sum(before.executions.values())} -> "
        f"{sum(after.values())}, Redis marker {'kept' if kept == before.marker else 'lost'}",
    )
    wait_for(
        "the moved jobs firing again",
        lambda: fired(compose, qwc_service, moved.jobs, lambda e: e["fire_ms"] > restarted_ms),
        FIRE_TIMEOUT_S,
    )
    report.check("fires resumed", True, "both moved jobs fired again after the restart")
    check_fired_once(compose, report, qwc_service, moved.jobs, "restart: every fire time once")
