"""The host side of deploy/smoke: running commands (their output kept in the run's log),
installing what is missing from Debian's packages, free loopback ports, the host's pip
settings."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .files import pip_settings

__all__ = [
    "SmokeError",
    "ensure_packages",
    "free_port",
    "host_pip_settings",
    "log",
    "run",
]

#: The command each Debian package brings; installed only when its command is missing.
PACKAGES = {
    "dockerd": "docker.io",
    "docker-compose": "docker-compose",
    "debootstrap": "debootstrap",
}
_LOG: list[Path] = []


class SmokeError(Exception):
    """A step could not be carried out; the message says which and why."""


def log_to(path: Path) -> None:
    """Append the output of every later command to ``path``."""
    _LOG[:] = [path]


def log(message: str) -> None:
    """A progress line on stdout and in the run's log."""
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    _append(line + "\n")


def _append(text: str) -> None:
    if _LOG:
        with _LOG[0].open("a", encoding="utf-8", errors="replace") as f:
            f.write(text)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    check: bool = True,
    timeout_s: float = 1800,
    logged: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; stdout and stderr are returned and, when ``logged``, copied to the run's
    log. Raises SmokeError (with the end of the output) when it fails and ``check``, or
    times out."""
    _append(f"$ {' '.join(argv)}\n")
    try:
        done = subprocess.run(
            list(argv),
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as e:
        raise SmokeError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''}: no end after {timeout_s:.0f} s"
        ) from e
    except FileNotFoundError as e:
        raise SmokeError(f"{argv[0]}: not found") from e
    _append((done.stdout + done.stderr if logged else "") + f"(exit {done.returncode})\n")
    if check and done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SmokeError(f"`{' '.join(argv[:3])} …` exited {done.returncode}:\n{tail}")
    return done


def ensure_packages() -> list[str]:
    """Install the Debian packages whose command is missing (none when a Docker engine of
    another origin is there: docker.io conflicts with Docker CE). Services are not started
    by the install (a policy-rc.d saying no is in place meanwhile, unless one exists).
    Returns the packages installed."""
    missing = [pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd, path=_SBIN_PATH) is None]
    if not missing:
        return []
    if shutil.which("apt-get") is None:
        raise SmokeError(f"install {', '.join(missing)} (no apt-get on this host)")
    log(f"installing {', '.join(missing)} from Debian's packages")
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text(
            "#!/bin/sh\n# deploy/smoke: no service starts during its install\nexit 101\n"
        )
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    finally:
        if ours:
            policy.unlink()
    return missing


_SBIN_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"]
)


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens on it at 127.0.0.1, else a port the kernel chooses."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise SmokeError("no free port on 127.0.0.1")


def host_pip_settings() -> dict[str, str]:
    """What pip on this host installs with (``pip config list`` and ``PIP_*``), empty when
    this Python has no pip."""
    done = run([sys.executable, "-m", "pip", "config", "list"], check=False)
    return pip_settings(done.stdout if done.returncode == 0 else "", os.environ)
