"""``docker-compose`` on the private engine, and what its containers report (``docker
inspect``, ``docker events``), read as plain dicts."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .engine import Docker
from .files import parse_env
from .host import SmokeError, run

__all__ = ["Compose", "docker_time_s"]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def docker_time_s(text: str) -> float:
    """Docker's RFC 3339 time with nanoseconds (``2026-12-06T14:57:42.763123456Z``) as epoch
    seconds; 0.0 for Docker's "never" (year 1)."""
    if text.startswith("0001-"):
        return 0.0
    head, _, frac = text.rstrip("Z").partition(".")
    offset = "+00:00"
    for sign in "+-":
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            offset = sign + rest
    stamp = datetime.fromisoformat(head + offset).timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


@dataclass(frozen=True)
class Compose:
    """``docker-compose -p PROJECT --project-directory REPO --env-file ENV -f … -f …``."""

    cli: str
    docker: Docker
    repo: Path
    files: tuple[Path, ...]
    env_file: Path

    @property
    def project(self) -> str:
        return parse_env(self.env_file.read_text()).get("COMPOSE_PROJECT_NAME", "qwcontrol")

    def env(self) -> dict[str, str]:
        """This process's environment without the variables the env file sets (the shell
        wins over .env in compose) and without other COMPOSE_* settings."""
        own = parse_env(self.env_file.read_text())
        env = {k: v for k, v in os.environ.items() if k not in own and not k.startswith("COMPOSE_")}
        return env | {"DOCKER_HOST": self.docker.host}

    def __call__(
        self, *args: str, check: bool = True, timeout_s: float = 900, logged: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            self.cli,
            "-p",
            self.project,
            "--project-directory",
            str(self.repo),
            "--env-file",
            str(self.env_file),
        ]
        for f in self.files:
            argv += ["-f", str(f)]
        return run([*argv, *args], env=self.env(), check=check, timeout_s=timeout_s, logged=logged)

    def services(self) -> list[str]:
        return self("config", "--services").stdout.split()

    def containers(self) -> dict[str, dict[str, Any]]:
        """``docker inspect`` of each of the project's containers, by service name."""
        ids = self.docker("ps", "-aq", "--filter", f"label={PROJECT_LABEL}={self.project}")
        if not ids.split():
            return {}
        found = json.loads(self.docker("inspect", *ids.split(), logged=False))
        return {c["Config"]["Labels"][SERVICE_LABEL]: c for c in found}

    def qwc(self, service: str, *args: str) -> Any:
        """``qwc ARGS --json`` run inside ``service``'s container, its output parsed."""
        done = self("exec", "-T", service, "qwc", *args, "--json", timeout_s=120, logged=False)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as e:
            raise SmokeError(f"qwc {' '.join(args)} printed no JSON: {done.stdout[:200]}") from e

    def events(self, since_s: float, until_s: float) -> list[dict[str, Any]]:
        """The project's container events between two epoch times, oldest first."""
        out = self.docker(
            "events",
            "--since",
            f"{since_s:.3f}",
            "--until",
            f"{until_s:.3f}",
            "--filter",
            "type=container",
            "--filter",
            f"label={PROJECT_LABEL}={self.project}",
            "--format",
            "{{json .}}",
        )
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def save_logs(self, path: Path) -> None:
        """Every container's log, with timestamps, into ``path`` (nothing raised)."""
        try:
            done = self("logs", "--no-color", "--timestamps", check=False, logged=False)
        except SmokeError as e:
            path.write_text(f"docker-compose logs: {e}\n")
        else:
            path.write_text(done.stdout + done.stderr)
