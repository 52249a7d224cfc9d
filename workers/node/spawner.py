"""One thread that starts a member's commands and watches them all until they end.

:class:`Spawner` runs what it is given with :meth:`Spawner.call_soon` in its thread; there
:meth:`Spawner.spawn` starts a command with ``os.posix_spawn`` in a session of its own
(``setsid``: its process group's id is its pid; stdin ``/dev/null``; stdout and stderr
together on one pipe; the environment given, the program looked up on that environment's
``PATH``; SIGPIPE at its default, as ``subprocess`` does; the member's own descriptors are
all close-on-exec, as Python opens them) and returns its pid. One ``selectors`` loop
then reads every command's output (handed to its ``feed`` as it comes) and sees every exit
(a Linux pidfd per command; where there is none, a ``waitpid`` poll every
:data:`EXIT_CHECK_S`).

A run is over once its command has exited and nothing of its group is left:

* the output still open at the exit (a process it left in the background holds the
  pipe): the group gets SIGTERM, SIGKILL ``grace_s`` later if still alive, and a pipe
  still open ``grace_s`` after that (held outside the group) is given up;
* the output closed but the group not empty (what it left does not hold the pipe):
  SIGTERM, and SIGKILL after ``grace_s`` to a group still alive.

Then its ``on_exit`` gets the exit code (negative: the signal that ended it), in this
thread. Callbacks must be quick: every command waits for them.

Why one thread and ``posix_spawn``: the member's threads take turns in one interpreter
(and CPython 3.11 holds it while a ``vfork`` child starts). 100 ``true`` run by the pool
in-process cost it 37-40 ms of CPU with a slot thread per command, each spawning with
``subprocess.Popen`` and waiting for it, and 22-24 ms with this thread; in a node firing
100 jobs a second, 0.54 against 0.26 ms per execution (docs/operations.md, "Sizing").
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import functools
import logging
import os
import selectors
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from workers.node.groups import END_GRACE_S, group_alive, signal_group

__all__ = ["EXIT_CHECK_S", "Spawner"]

log = logging.getLogger(__name__)

EXIT_CHECK_S = 0.1  # how often exits are polled where there is no pidfd
_ENDING_CHECK_S = 0.02  # how often a group being ended is looked at
_CHUNK_BYTES = 65536
# Python ignores SIGPIPE (and SIGXFSZ); a command gets them back at their default, as from
# subprocess.Popen (restore_signals): ``yes | head`` ends ``yes``.
_RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


@dataclasses.dataclass
class _Run:
    """A command being watched. Times are ``time.monotonic()`` seconds."""

    pid: int
    out: int | None  # the output pipe's read end; None once closed
    exit_fd: int | None  # readable once the command exited; None when reaped or none
    feed: Callable[[bytes], object]
    on_exit: Callable[[int | None], object]
    exit_code: int | None = None
    exited: bool = False
    kill_at: float | None = None  # its group is ending: SIGKILL then if still alive
    killed: bool = False
    give_up_at: float | None = None  # the output is no longer waited for then


class Spawner:
    """Starts and watches commands in one thread (module docstring). ``grace_s``: between
    SIGTERM and SIGKILL to what a command leaves behind."""

    def __init__(self, *, grace_s: float = END_GRACE_S, name: str = "spawner") -> None:
        self.grace_s = grace_s
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._woken)
        self._lock = threading.Lock()
        self._calls: collections.deque[Callable[[], object]] = collections.deque()
        self._woke = False
        self._closing = False
        self._runs: dict[int, _Run] = {}
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call_soon(self, call: Callable[[], object]) -> None:
        """Run ``call`` in the spawner's thread, after those given before it (thread-safe;
        what it raises is logged)."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the spawner is closed")
            self._calls.append(call)
            wake, self._woke = not self._woke, True
            if wake:
                os.write(self._wake_w, b"\0")

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        feed: Callable[[bytes], object],
        on_exit: Callable[[int | None], object],
    ) -> int:
        """Start ``argv`` (module docstring) and watch it; returns its pid (= its group's
        id). Only in the spawner's thread (:meth:`call_soon`). Raises ``ValueError`` for
        an empty ``argv`` and ``OSError`` when it cannot start (not found, not
        executable, out of descriptors)."""
        if not argv:
            raise ValueError("empty command")
        program = _program(argv[0], env)
        out, write_end = os.pipe()
        try:
            pid = os.posix_spawnp(
                program,
                list(argv),
                env,
                setsid=True,
                setsigdef=_RESTORED_SIGNALS,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, _devnull(), 0),
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, write_end, 2),
                ],
            )
        except BaseException:
            os.close(out)
            raise
        finally:
            os.close(write_end)
        os.set_blocking(out, False)
        run = _Run(pid, out, _exit_fd(pid), feed, on_exit)
        self._runs[pid] = run
        self._selector.register(out, selectors.EVENT_READ, functools.partial(self._read, run))
        if run.exit_fd is not None:
            self._selector.register(
                run.exit_fd, selectors.EVENT_READ, functools.partial(self._reap, run)
            )
        return pid

    def close(self, timeout_s: float | None = None) -> None:
        """Run what was given, wait for every command to end (end them first), then stop
        the thread (waits at most ``timeout_s``; call again to wait more). Nothing can be
        given after (:meth:`call_soon` raises ``RuntimeError``)."""
        with self._lock:
            if not self._closing:
                self._closing = True
                os.write(self._wake_w, b"\0")
        self._thread.join(timeout_s)
        with self._lock:
            if not self._thread.is_alive() and self._wake_w >= 0:
                self._selector.close()
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1

    def _loop(self) -> None:
        while True:
            try:
                for key, _ in self._selector.select(self._timeout_s()):
                    key.data(key.fd)
                now_s = time.monotonic()
                for run in list(self._runs.values()):
                    if not run.exited and run.exit_fd is None:
                        self._reap(run)
                    if run.exited:
                        self._wind_down(run, now_s)
            except Exception:
                log.exception("spawner: a step failed")
            with self._lock:
                if self._closing and not self._calls and not self._runs:
                    return

    def _timeout_s(self) -> float | None:
        if any(run.exited for run in self._runs.values()):
            return _ENDING_CHECK_S
        if any(run.exit_fd is None for run in self._runs.values()):
            return EXIT_CHECK_S
        return None

    def _woken(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(fd, 4096)
        with self._lock:
            calls, self._calls = self._calls, collections.deque()
            self._woke = False
        for call in calls:
            try:
                call()
            except Exception:
                log.exception("spawner: a call failed")

    def _read(self, run: _Run, fd: int) -> None:
        """Read what the pipe holds now; close it at its end."""
        while True:
            try:
                chunk = os.read(fd, _CHUNK_BYTES)
            except BlockingIOError:
                return
            if not chunk:
                self._close_output(run)
                return
            run.feed(chunk)

    def _reap(self, run: _Run, _fd: int | None = None) -> None:
        pid, status = os.waitpid(run.pid, os.WNOHANG)
        if pid == 0:
            return
        run.exited, run.exit_code = True, os.waitstatus_to_exitcode(status)
        if run.exit_fd is not None:
            self._selector.unregister(run.exit_fd)
            os.close(run.exit_fd)
            run.exit_fd = None

    def _wind_down(self, run: _Run, now_s: float) -> None:
        """After the exit: end what the command left in its group (module docstring), then
        hand over the exit code."""
        if run.out is not None:
            if run.give_up_at is None:
                self._start_ending(run, now_s)
                run.give_up_at = now_s + 2 * self.grace_s
            self._kill_when_due(run, now_s)
            if now_s < run.give_up_at:
                return
            log.warning("command %s: output still open after its group ended; left", run.pid)
            self._close_output(run)
        if not run.killed and group_alive(run.pid):
            if run.kill_at is None:
                self._start_ending(run, now_s)
            if not self._kill_when_due(run, now_s):
                return
        del self._runs[run.pid]
        try:
            run.on_exit(run.exit_code)
        except Exception:
            log.exception("command %s: its end could not be handed over", run.pid)

    def _start_ending(self, run: _Run, now_s: float) -> None:
        run.kill_at = now_s + self.grace_s
        signal_group(run.pid, signal.SIGTERM)

    def _kill_when_due(self, run: _Run, now_s: float) -> bool:
        """SIGKILL the group once its grace passed (True: done, or nothing left)."""
        if run.killed:
            return True
        if run.kill_at is None or now_s < run.kill_at:
            return False
        run.killed = True
        if signal_group(run.pid, signal.SIGKILL):
            log.warning(
                "process group %s: still alive %.1f s after SIGTERM; killed", run.pid, self.grace_s
            )
        return True

    def _close_output(self, run: _Run) -> None:
        if run.out is not None:
            self._selector.unregister(run.out)
            os.close(run.out)
            run.out = None


def _program(name: str, env: Mapping[str, str]) -> str:
    """What ``posix_spawnp`` runs for ``name``: itself when it is a path or when ``env``
    has the member's own ``PATH`` (which ``posix_spawnp`` searches), else the program
    found on ``env``'s ``PATH``."""
    path = env.get("PATH", os.defpath)
    if os.sep in name or path == os.environ.get("PATH", os.defpath):
        return name
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    return found


@functools.cache
def _devnull() -> int:
    """A descriptor of ``/dev/null`` for every command's stdin, opened once; not inherited
    by the commands but as their stdin."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def _exit_fd(pid: int) -> int | None:
    """A descriptor readable once ``pid`` exits (Linux pidfd), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
