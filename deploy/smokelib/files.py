"""What deploy/smoke writes before it starts anything, as pure functions of their inputs:
its ``.env`` (deploy/env.example with fresh secrets), compose.yaml's copy without published
ports, the override that moves the services onto host networking, and pip's build secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PIP_CERT_TARGET",
    "Ports",
    "manager_command",
    "moved_url",
    "override",
    "override_text",
    "parse_env",
    "pip_conf",
    "pip_settings",
    "smoke_env",
    "without_published_ports",
]

REDIS = "redis"
POSTGRES = "postgres"
LOOPBACK = "127.0.0.1"
#: Where the project's Dockerfile mounts the build secret ``pip-cert`` (BuildKit's default).
PIP_CERT_TARGET = "/run/secrets/pip-cert"
_PIP_KEYS = (
    "index-url",
    "extra-index-url",
    "trusted-host",
    "timeout",
    "default-timeout",
    "retries",
    "cert",
)
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Ports:
    """The 127.0.0.1 ports the services listen on under host networking."""

    redis: int
    postgres: int
    manager: int


def parse_env(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (``#`` comments and blank lines skipped)."""
    pairs = (_ENV_LINE.match(line.strip()) for line in text.splitlines())
    return {m.group(1): m.group(2) for m in pairs if m}


def smoke_env(example: str, token: Callable[[], str]) -> str:
    """deploy/env.example with every ``change-me…`` value replaced by a fresh ``token()``;
    other lines (comments, ``COMPOSE_PROJECT_NAME``, ``QWC_VERSION``) as they are."""
    out = []
    for line in example.splitlines():
        m = _ENV_LINE.match(line.strip())
        if m and m.group(2).startswith("change-me"):
            line = f"{m.group(1)}={token()}"
        out.append(line)
    return "\n".join(out) + "\n"


def without_published_ports(compose: str) -> tuple[str, list[str]]:
    """compose.yaml's text without its ``ports:`` lists, and the lines removed.

    Under host networking nothing is published, and docker-compose 1.29 refuses ``ports``
    beside ``network_mode: host`` while an override file can add list entries but never
    remove one. Every other byte is kept. Raises ValueError for a ``ports:`` this function
    cannot delimit (an inline ``ports: [...]`` or anything but a block list of ``- …``)."""
    lines = compose.splitlines(keepends=True)
    kept: list[str] = []
    removed: list[str] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s+)ports:(.*)$", lines[i].rstrip("\n"))
        if not m:
            kept.append(lines[i])
            i += 1
            continue
        if m.group(2).split("#")[0].strip():
            raise ValueError(f"compose.yaml line {i + 1}: write ports as a block list")
        indent = len(m.group(1))
        removed.append(lines[i].rstrip("\n"))
        i += 1
        while i < len(lines) and _deeper_item(lines[i], indent):
            removed.append(lines[i].rstrip("\n"))
            i += 1
    return "".join(kept), removed


def _deeper_item(line: str, indent: int) -> bool:
    stripped = line.lstrip(" ")
    return len(line) - len(stripped) > indent and stripped.startswith("- ")


def moved_url(compose: str, variable: str, port: int, host: str) -> str:
    """The value compose.yaml gives ``variable`` (its ``${…}`` kept for compose to fill in),
    with ``@host:<its port>/`` pointed at ``port``. Raises ValueError unless compose.yaml
    sets ``variable`` exactly once, to a URL naming ``host`` with a port."""
    found = re.findall(rf'^\s+{re.escape(variable)}:\s*"([^"]+)"\s*$', compose, re.M)
    if len(found) != 1:
        raise ValueError(f"compose.yaml sets {variable} {len(found)} times, expected once")
    url, n = re.subn(rf"@{re.escape(host)}:\d+/", f"@{host}:{port}/", found[0])
    if n != 1:
        raise ValueError(f"compose.yaml's {variable} names no {host}:PORT")
    return url


def manager_command(compose: str, port: int) -> list[str] | None:
    """compose.yaml's manager command with ``--port port``, or None when it already says
    that port (then the override leaves the command alone)."""
    for m in re.finditer(r'^\s+command:\s*(\["manager".*\])\s*$', compose, re.M):
        command = json.loads(m.group(1))
        if "--port" in command:
            at = command.index("--port") + 1
            if int(command[at]) == port:
                return None
            return [*command[:at], str(port), *command[at + 1 :]]
    raise ValueError("compose.yaml has no manager command")


def override(
    compose: str, services: Iterable[str], ports: Ports, images: Mapping[str, str]
) -> dict[str, Any]:
    """The override: every service on host networking; Redis and PostgreSQL on the local
    images ``images[REDIS]``/``images[POSTGRES]`` and on ``ports`` (``REDIS_PORT`` and
    ``PGPORT``, which those images read); the qwc services resolve ``redis``/``postgres`` to
    127.0.0.1 and get compose.yaml's own URLs with the moved ports; the manager's command
    only when its port moves."""
    urls = {
        "QWC_REDIS_URL": moved_url(compose, "QWC_REDIS_URL", ports.redis, REDIS),
        "QWC_DATABASE_URL": moved_url(compose, "QWC_DATABASE_URL", ports.postgres, POSTGRES),
    }
    command = manager_command(compose, ports.manager)
    doc: dict[str, Any] = {}
    for name in services:
        service: dict[str, Any] = {"network_mode": "host"}
        if name == REDIS:
            service |= {"image": images[REDIS], "environment": {"REDIS_PORT": str(ports.redis)}}
        elif name == POSTGRES:
            service |= {"image": images[POSTGRES], "environment": {"PGPORT": str(ports.postgres)}}
        else:
            service |= {
                "extra_hosts": [f"{REDIS}:{LOOPBACK}", f"{POSTGRES}:{LOOPBACK}"],
                "environment": dict(urls),
            }
            if name == "manager" and command is not None:
                service["command"] = command
        doc[name] = service
    missing = {REDIS, POSTGRES} - set(doc)
    if missing:
        raise ValueError(f"compose.yaml has no service {', '.join(sorted(missing))}")
    return {"services": doc}


def override_text(doc: Mapping[str, Any]) -> str:
    """The override as a file compose reads (JSON is YAML), with a comment saying what it is."""
    head = (
        "# deploy/smoke's override of compose.yaml: host networking, loopback ports, local\n"
        "# Redis and PostgreSQL images. Written at each run; compose fills in the ${...}.\n"
    )
    return head + json.dumps(doc, indent=2) + "\n"


def pip_settings(config_list: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The settings pip would use to install, from ``pip config list``'s output
    (``section.key='value'`` lines; the ``global`` and ``install`` sections) overlaid by
    ``PIP_*`` variables of ``environ``, as pip itself ranks them. Only keys that matter on
    another machine are kept (indexes, trusted hosts, time-outs, retries, the CA bundle)."""
    found: dict[str, str] = {}
    for line in config_list.splitlines():
        m = re.match(r"^(global|install)\.([a-z-]+)='(.*)'$", line.strip())
        if m and m.group(2) in _PIP_KEYS and (m.group(1) == "install" or m.group(2) not in found):
            found[m.group(2)] = m.group(3)
    for key in _PIP_KEYS:
        value = environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            found[key] = value
    return found


def pip_conf(settings: Mapping[str, str]) -> str | None:
    """A pip.conf for the image's build from the host's ``settings`` (:func:`pip_settings`):
    index URLs that are paths on this host (``file:``) are left out, and the CA bundle is
    the build secret at :data:`PIP_CERT_TARGET`. None when nothing is left to say."""
    lines = []
    for key in _PIP_KEYS:
        value = settings.get(key)
        if key in ("index-url", "extra-index-url") and value:
            value = " ".join(u for u in value.split() if u.startswith(("http://", "https://")))
        if key == "cert" and value:
            value = PIP_CERT_TARGET
        if value:
            lines.append(f"{key} = {value}")
    return "[global]\n" + "\n".join(lines) + "\n" if lines else None
