"""Process groups: every command of an execution runs in a session of its own, and is ended
as a whole — its children and grandchildren with it.

:func:`spawn` starts a command with ``start_new_session=True`` (``setsid`` in the child:
the command leads a new session and process group whose id is its pid; CPython keeps its
fast ``vfork`` path, which a ``preexec_fn`` would disable, and which is unsafe in a process
with threads anyway). A terminal's Ctrl-C reaches the node only, never its commands: the
node decides how they end.

Ending a group (:func:`end_groups`): ``SIGTERM`` to every process of the group, then, for
a group still alive after ``grace_s`` (:data:`END_GRACE_S`, 2 s), ``SIGKILL``. A group is
alive while any of its processes is (a zombie included, until its parent reaps it).
:func:`execution_groups` finds the groups of a member's executions by their environment
(the watchdog's last sweep: a group its node started but had not told it about yet).

:func:`read_output` reads a command's output until its pipe closes. A process the command
started in the background inherits the pipe and would hold it open (and the execution's
slot) long after the command exited: once the command itself has exited, its group's
leftovers are ended, so nothing outlives its execution and the slot is free.

A group id is the pid of its first process; after that process and every other member of
its group are gone, the id may in theory be reused by a new group. The pool forgets a group
as soon as its command has exited and its group was ended, which keeps that window to
microseconds.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence

__all__ = [
    "END_GRACE_S",
    "EXECUTION_ID_VAR",
    "MEMBER_UUID_VAR",
    "end_groups",
    "execution_groups",
    "group_alive",
    "read_output",
    "signal_group",
    "spawn",
]

log = logging.getLogger(__name__)

END_GRACE_S = 2.0  # SIGTERM, then SIGKILL this long after for a group still alive
# Two of the identity variables every execution's environment has (workers.node.executors
# sets them): how the processes of a member's executions are found.
MEMBER_UUID_VAR = "QWC_MEMBER_UUID"
EXECUTION_ID_VAR = "QWC_EXECUTION_ID"
_POLL_S = 0.02
_CHUNK_BYTES = 65536
_EXIT_CHECK_MS = 100  # how often the exit is checked where pidfd_open is missing


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` (no shell) in a new session, stdin closed, stdout and stderr together
    on one pipe. Raises ``OSError`` when it cannot be started (not found, not executable)
    and ``ValueError`` for an empty ``argv``."""
    if not argv:
        raise ValueError("empty command")
    return subprocess.Popen(
        list(argv),
        stdin=_devnull(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,
    )


@functools.cache
def _devnull() -> int:
    """A descriptor of ``/dev/null`` for every command's stdin, opened once (``DEVNULL``
    opens and closes one per command); not inherited by the commands but as their stdin."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to every process of group ``pgid``; False when the group is gone (or
    not ours to signal: logged)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("process group %s: not allowed to send signal %s", pgid, sig)
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (a zombie counts)."""
    return signal_group(pgid, 0)


def end_groups(
    pgids: Collection[int],
    *,
    grace_s: float = END_GRACE_S,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> list[int]:
    """End the groups ``pgids``: SIGTERM to each, then SIGKILL to those still alive after
    ``grace_s`` seconds. Blocks until every group is gone or SIGKILLed (at most about
    ``grace_s``); returns the groups that needed SIGKILL."""
    alive = [pgid for pgid in pgids if signal_group(pgid, signal.SIGTERM)]
    deadline = monotonic() + grace_s
    while alive and monotonic() < deadline:
        sleep(_POLL_S)
        alive = [pgid for pgid in alive if group_alive(pgid)]
    killed = [pgid for pgid in alive if signal_group(pgid, signal.SIGKILL)]
    if killed:
        log.warning("process groups %s: still alive %.1f s after SIGTERM; killed", killed, grace_s)
    return killed


def execution_groups(
    member_uuid: str, *, started_before_s: float, proc_dir: str = "/proc"
) -> dict[int, str]:
    """The process groups of the processes that run executions of ``member_uuid`` (their
    environment has :data:`MEMBER_UUID_VAR` = it and an :data:`EXECUTION_ID_VAR`, as every
    execution's has) and started before ``started_before_s`` (seconds since boot,
    ``CLOCK_BOOTTIME``): group id -> execution id. A process that cannot be read (gone,
    another user's) is skipped; where there is no ``/proc``, none are found."""
    member = f"{MEMBER_UUID_VAR}={member_uuid}".encode()
    execution = f"{EXECUTION_ID_VAR}=".encode()
    ticks_s = os.sysconf("SC_CLK_TCK")
    found: dict[int, str] = {}
    try:
        pids = [int(name) for name in os.listdir(proc_dir) if name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"{proc_dir}/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"{proc_dir}/{pid}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
            pgid = os.getpgid(pid)
        except (OSError, IndexError):
            continue
        if member not in env:
            continue
        ids = [v[len(execution) :] for v in env if v.startswith(execution)]
        started_s = int(stat[19]) / ticks_s  # field 22, starttime, in clock ticks since boot
        if ids and started_s < started_before_s:
            found[pgid] = ids[0].decode(errors="replace")
    return found


def read_output(
    proc: subprocess.Popen[bytes],
    feed: Callable[[bytes], object],
    *,
    grace_s: float = END_GRACE_S,
) -> None:
    """Hand ``proc``'s output (its stdout pipe, from :func:`spawn`) to ``feed`` as it comes,
    until the pipe closes. Once ``proc`` itself has exited, the processes left in its group
    are ended (:func:`end_groups`) so that they stop holding the pipe; a pipe still open
    ``grace_s`` after that (held outside the group) is given up. Does not wait for
    ``proc``."""
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    poller = select.poll()
    poller.register(out, select.POLLIN)
    exit_fd = _exit_fd(proc.pid)
    if exit_fd is not None:
        poller.register(exit_fd, select.POLLIN)
    try:
        exited = False
        while True:
            wait_ms = grace_s * 1000 if exited else None if exit_fd is not None else _EXIT_CHECK_MS
            ready = {fd for fd, _ in poller.poll(wait_ms)}
            if out in ready:
                chunk = os.read(out, _CHUNK_BYTES)
                if not chunk:
                    return
                feed(chunk)
            elif exited:
                log.warning("command %s: output still open after its group ended; left", proc.pid)
                return
            elif proc.poll() is not None:
                exited = True
                if exit_fd is not None:
                    poller.unregister(exit_fd)
                end_groups([proc.pid], grace_s=grace_s)  # what it left holding the pipe
    finally:
        if exit_fd is not None:
            os.close(exit_fd)


def _exit_fd(pid: int) -> int | None:
    """A descriptor readable once ``pid`` exits (Linux pidfd), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
