"""What deploy/smoke proves about the running compose project, one step after the other.

Each step records its checks in a :class:`Report` (a check that fails does not stop the
step; a step that cannot go on raises SmokeError). Times are wall-clock seconds (the
containers' own timestamps are wall-clock); deadlines are generous: the machine may be
loaded, and the takeover waits for the real ``considerDead`` + ``autotakeover.delay``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .compose import Compose, docker_time_s
from .files import POSTGRES, REDIS
from .host import SmokeError, log

__all__ = ["Report", "check_manager", "check_stop", "restart", "start", "takeover"]

T = TypeVar("T")
#: Generous: on a loaded 2-core host the nine qwc healthchecks, running in step, can time
#: out for minutes (docs/operations.md, "Healthchecks in step").
HEALTHY_TIMEOUT_S = 600.0
TAKEOVER_TIMEOUT_S = 420.0
FIRE_TIMEOUT_S = 120.0
POLL_S = 2.0
JOB_PROJECT = "qwc-smoke"
EVERY_5_S = "*/5 * * * * *"
MARKER_KEY = "qwc-smoke:marker"
DOCKER_STOP_DEFAULT_S = 10.0


@dataclass
class Report:
    """The checks made (name, passed, detail) and the figures for the summary."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        log(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        return ok

    def require(self, name: str, ok: bool, detail: str) -> None:
        if not self.check(name, ok, detail):
            raise SmokeError(f"{name}: {detail}")

    @property
    def failed(self) -> list[str]:
        return [name for name, ok, _ in self.checks if not ok]


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float) -> T:
    """``probe()`` every POLL_S until it returns something, or SmokeError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise SmokeError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def one_shot(container: dict[str, Any]) -> bool:
    """A container without a healthcheck of its own that is meant to exit (``migrate``)."""
    return bool(container["Config"].get("Healthcheck", {}).get("Test") == ["NONE"])


@dataclass
class HealthLog:
    """Every healthcheck run seen while waiting (Docker keeps only a container's last 5):
    (service, start) -> (seconds it took, exit code, output)."""

    runs: dict[tuple[str, str], tuple[float, int, str]] = field(default_factory=dict)

    def record(self, found: dict[str, dict[str, Any]]) -> None:
        for name, c in found.items():
            for e in c["State"].get("Health", {}).get("Log") or []:
                took_s = docker_time_s(e["End"]) - docker_time_s(e["Start"])
                self.runs[(name, e["Start"])] = (took_s, e["ExitCode"], e["Output"].strip())

    def summary(self) -> str:
        if not self.runs:
            return "none seen"
        failed = sorted({name for (name, _), (_, code, _) in self.runs.items() if code != 0})
        slowest = max(took_s for took_s, _, _ in self.runs.values())
        return (
            f"{len(self.runs)} runs, slowest {slowest:.1f} s, "
            f"failed in: {', '.join(failed) or 'none'}"
        )


def _all_ready(
    compose: Compose, services: list[str], health: HealthLog
) -> dict[str, dict[str, Any]] | None:
    """Every container of ``services`` healthy, or exited 0 if it is a one-shot; None while
    not yet. Raises SmokeError for a container that exited otherwise. An unhealthy one is
    waited for (a loaded host can make a check time out; the next may pass)."""
    found = compose.containers()
    health.record(found)
    ready = True
    for name in services:
        c = found.get(name)
        if c is None:
            return None
        state = c["State"]
        if one_shot(c):
            if state["Status"] == "exited" and state["ExitCode"] != 0:
                raise SmokeError(f"{name} exited {state['ExitCode']}")
            ready = ready and state["Status"] == "exited"
        elif state["Status"] == "exited":
            raise SmokeError(f"{name} exited {state['ExitCode']} instead of turning healthy")
        else:
            ready = ready and state.get("Health", {}).get("Status") == "healthy"
    return found if ready else None


def _not_healthy(compose: Compose) -> str:
    out = []
    for name, c in sorted(compose.containers().items()):
        health = c["State"].get("Health")
        if health and health["Status"] != "healthy":
            last = (health.get("Log") or [{"Output": ""}])[-1]["Output"].strip()
            out.append(f"{name} {health['Status']} ({last or 'no check finished'})")
    return "; ".join(out)


def start(compose: Compose, report: Report, label: str) -> dict[str, dict[str, Any]]:
    """``docker-compose up -d``, then every service healthy by its own healthcheck and
    every one-shot service exited 0, and the one-shots done before the qwc services
    started. Records the time to healthy as the figure ``label``."""
    services = compose.services()
    health = HealthLog()
    started_at = time.time()
    log(f"{label}: docker-compose up -d")
    compose("up", "-d", "--no-build", timeout_s=HEALTHY_TIMEOUT_S)
    try:
        found = wait_for(
            f"{label}: every service healthy",
            lambda: _all_ready(compose, services, health),
            HEALTHY_TIMEOUT_S,
        )
    except SmokeError as e:
        raise SmokeError(f"{e}: {_not_healthy(compose)}") from e
    report.figures[f"healthchecks ({label})"] = health.summary()
    healthy_s = time.time() - started_at
    long_running = [s for s, c in found.items() if not one_shot(c)]
    report.check(
        f"{label}: healthy",
        True,
        f"{len(long_running)} services healthy {healthy_s:.1f} s after `up`",
    )
    report.figures[f"time to healthy ({label})"] = f"{healthy_s:.1f} s"
    for name, c in found.items():
        if not one_shot(c):
            continue
        finished_s = docker_time_s(c["State"]["FinishedAt"])
        late = sorted(
            s
            for s in long_running
            if s not in (REDIS, POSTGRES)
            and docker_time_s(found[s]["State"]["StartedAt"]) < finished_s
        )
        report.check(
            f"{label}: {name} before the workers",
            finished_s >= started_at and not late,
            f"{name} exited 0 at +{finished_s - started_at:.1f} s"
            + (
                f"; started before it: {', '.join(late)}"
                if late
                else ", before any qwc service started"
            ),
        )
    return found


def check_manager(report: Report, containers: dict[str, dict[str, Any]], token: str) -> int:
    """The manager answers on its port: 401 without a token, the members with the token
    from .env. Returns the port."""
    manager = next(c for c in containers.values() if c["Config"]["Cmd"][:1] == ["manager"])
    cmd = manager["Config"]["Cmd"]
    port = int(cmd[cmd.index("--port") + 1])
    url = f"http://127.0.0.1:{port}/api/cluster/members"
    anonymous = _http_status(url, None)
    members = wait_for(
        "the manager lists every member active", lambda: _active_members(url, token), 120
    )
    report.check(
        "manager",
        anonymous == 401,
        f"GET {url}: {anonymous} without a token, 200 with QWC_MANAGER_TOKEN "
        f"({len(members)} members active)",
    )
    return port


def _http_status(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def _active_members(url: str, token: str) -> list[dict[str, Any]] | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            members: list[dict[str, Any]] = json.load(response)
    except (urllib.error.URLError, OSError):
        return None
    nodes = [m for m in members if m["state"] == "active"]
    return members if len(nodes) >= 3 else None


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
        lambda: _fired(compose, qwc_service, jobs, lambda e: e["member_uuid"] == victim_uuid),
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
        lambda: _fired(
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
    _check_fired_once(compose, report, qwc_service, jobs, "takeover: every fire time once")
    return Takeover(victim, victim_uuid, jobs, decided_ms)


def _executions(compose: Compose, service: str, job: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = compose.qwc(
        service, "executions", "--job", job, "--limit", "10000"
    )
    return rows


def _fired(
    compose: Compose, service: str, jobs: tuple[str, ...], where: Callable[[dict[str, Any]], bool]
) -> bool | None:
    for job in jobs:
        if not any(
            e["status"] == "succeeded" and where(e) for e in _executions(compose, service, job)
        ):
            return None
    return True


def _committed(compose: Compose, service: str, dead_uuid: str) -> dict[str, Any] | None:
    for row in compose.qwc(service, "takeovers"):
        if row["dead_uuid"] == dead_uuid and row["outcome"] == "committed":
            return dict(row)
    return None


def _check_fired_once(
    compose: Compose, report: Report, service: str, jobs: tuple[str, ...], name: str
) -> int:
    total = 0
    twice: list[str] = []
    for job in jobs:
        runs = [e for e in _executions(compose, service, job) if e["trigger"] == "schedule"]
        total += len(runs)
        twice += [f"{job}@{ms}" for ms, n in Counter(e["fire_ms"] for e in runs).items() if n > 1]
    report.check(name, not twice, f"{total} scheduled executions, fired twice: {twice or 'none'}")
    return total


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
    counts = {j: len(_executions(compose, qwc_service, j)) for j in moved.jobs}
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
    after = {j: len(_executions(compose, qwc_service, j)) for j in moved.jobs}
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
        lambda: _fired(compose, qwc_service, moved.jobs, lambda e: e["fire_ms"] > restarted_ms),
        FIRE_TIMEOUT_S,
    )
    report.check("fires resumed", True, "both moved jobs fired again after the restart")
    _check_fired_once(compose, report, qwc_service, moved.jobs, "restart: every fire time once")
