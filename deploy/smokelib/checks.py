"""What deploy/smoke proves about the running compose project: its report, the start-up
(start order, every service healthy) and the manager's answer.

Each step (here, in :mod:`.takeover` and :mod:`.restart`) records its checks in a
:class:`Report` (a check that fails does not stop the step; a step that cannot go on
raises SmokeError). Times are wall-clock seconds (the containers' own timestamps are
wall-clock); deadlines are generous: the machine may be loaded, and the takeover waits
for the real ``considerDead`` + ``autotakeover.delay``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .compose import Compose, docker_time_s
from .files import POSTGRES, REDIS
from .host import SmokeError, log

__all__ = ["POLL_S", "Report", "check_manager", "start", "wait_for"]

T = TypeVar("T")
#: Generous: on a loaded 2-core host the nine qwc healthchecks, running in step, can time
#: out for minutes (docs/operations.md, "Healthchecks in step").
HEALTHY_TIMEOUT_S = 600.0
POLL_S = 2.0


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
