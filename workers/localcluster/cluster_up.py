"""Supervising a local cluster: start every process of a topology, restart what exits
unasked, stop them all on request; and the manager's tokens of a local cluster.

Used by ``qwc cluster up`` (and, for the tokens, ``qwc demo``). The decisions (restart, or
give up) are :func:`workers.localcluster.cluster_plan.on_exit`'s; this module only polls the child
processes and acts. Every child is a real ``qwc`` process in a session of its own (Ctrl-C
in the terminal reaches only the supervisor, which then stops each child with SIGTERM).

Tokens (:func:`local_tokens`): a local cluster's page must work from the first minute, so
a token the settings do not give (``qwcontrol.manager.token``, and ``.readToken`` unless
``readOpen``) is made up — random, kept in ``<home>/manager-tokens.properties`` (mode
0600, so a cluster started again in the same data directory keeps them) and handed to the
children in their environment; they are never logged. :func:`page_url` is the page's
address with the read token in its fragment (``#token=…``): the page moves it into the
tab's ``sessionStorage`` and out of the address bar, and a fragment never reaches the
server, so no access log holds it.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import javaproperties

from schemas.settings import Settings
from workers.localcluster.cluster_plan import Action, ProcessSpec, on_exit
from workers.localcluster.local import LocalProcesses

__all__ = [
    "POLL_S",
    "STOP_TIMEOUT_S",
    "TOKENS_FILE",
    "PageAccess",
    "Supervisor",
    "child_env",
    "local_tokens",
    "page_url",
    "stop_timeout_s",
]

log = logging.getLogger(__name__)

POLL_S = 0.2
STOP_TIMEOUT_S = 10.0  # after SIGTERM (+ drainTimeout, see stop_timeout_s) before SIGKILL


def stop_timeout_s(drain_timeout_s: float) -> float:
    """How long a process gets after SIGTERM before SIGKILL: a node drains for up to
    ``drain_timeout_s`` (``qwcontrol.executions.drainTimeout``), then needs a few seconds
    to end what is left and hand it back; every other process stops within
    :data:`STOP_TIMEOUT_S`."""
    return drain_timeout_s + STOP_TIMEOUT_S


TOKENS_FILE = "manager-tokens.properties"
_WRITE_KEY, _READ_KEY = "qwcontrol.manager.token", "qwcontrol.manager.readToken"
_ENV = {_WRITE_KEY: "QWC_MANAGER_TOKEN", _READ_KEY: "QWC_MANAGER_READTOKEN"}


@dataclass(frozen=True)
class PageAccess:
    """The tokens of a local cluster's manager: ``env`` (for the children: the tokens made
    up here), the read token the page's address carries (None: reads are open), and the
    file that keeps the made-up ones (None: none was made up)."""

    env: dict[str, str]
    read_token: str | None
    file: Path | None


def local_tokens(settings: Settings, home: Path) -> PageAccess:
    """The manager's tokens for the cluster of ``home``: those ``settings`` give, else
    those kept in ``home/manager-tokens.properties``, else new random ones (kept there,
    mode 0600). Raises ``OSError`` when the file cannot be read or written."""
    path = home / TOKENS_FILE
    kept = _read_tokens(path)
    wanted = [_WRITE_KEY] if settings.manager_token is None else []
    if not settings.manager_read_open and settings.manager_read_token is None:
        wanted.append(_READ_KEY)
    made = {key: kept.get(key) or secrets.token_urlsafe(24) for key in wanted}
    if any(kept.get(key) != token for key, token in made.items()):
        _write_tokens(path, {**kept, **made})
    read: str | None = None
    if settings.manager_read_token is not None and not settings.manager_read_open:
        read = settings.manager_read_token.get_secret_value()
    elif _READ_KEY in made:
        read = made[_READ_KEY]
    return PageAccess({_ENV[k]: v for k, v in made.items()}, read, path if made else None)


def _read_tokens(path: Path) -> dict[str, str]:
    try:
        with path.open(encoding="utf-8") as file:
            found: dict[str, str] = javaproperties.load(file)
    except FileNotFoundError:
        return {}
    return {k: v for k, v in found.items() if k in _ENV and v}


def _write_tokens(path: Path, tokens: Mapping[str, str]) -> None:
    """Write ``tokens`` to ``path`` through a file created with mode 0600 (never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write("# the manager's tokens of this local cluster (qwc cluster up, qwc demo)\n")
        javaproperties.dump(dict(tokens), file, timestamp=False)
    os.replace(temporary, path)


def page_url(host: str, port: int, read_token: str | None) -> str:
    """The page's address on ``host``:``port`` (a wildcard host as 127.0.0.1), with
    ``#token=<read token>`` when there is one."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    fragment = f"#token={quote(read_token, safe='')}" if read_token else ""
    return f"http://{shown}:{port}/ui/{fragment}"


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
