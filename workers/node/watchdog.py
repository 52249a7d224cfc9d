"""The node's watchdog: a small process that ends the process groups of a node's executions
when the node cannot — it died, or it is paused or cut off while the store moved them on.

The node starts it once (:class:`Watchdog`, a fresh interpreter: ``qwc node-watchdog``, in a
session of its own, so a signal to the node's process group does not reach it) and feeds it,
on its stdin, one line per change:

* first line: its settings as JSON (store URL, member uuid, check interval, grace);
* ``+ <pgid> <execution id>``: a command was started in group ``pgid``;
* ``- <pgid>``: that group ended (the node is done with it).

The watchdog (:func:`main`):

* on end of file (the node exited, however: SIGKILL included) ends every group it still
  holds (SIGTERM, then SIGKILL after the grace) and exits: nothing of a dead node runs on
  (its executions stay ``running`` in the store for a recovery to decide). A node killed
  between a spawn and its ``+`` line never told of that group: the watchdog also ends the
  groups of processes whose environment names this member and an execution the store has
  ``running`` on it, started before the end of file
  (:func:`workers.node.groups.execution_groups`);
* every check interval, while it holds groups, asks the store in ONE query which of their
  executions are still ``running`` on this member, and ends the groups of the others: an
  execution recovered elsewhere (marked ``incomplete`` while the node was cut off from
  Redis or paused) or aborted in the store never runs on beside its retry for longer than
  one interval. A store that does not answer leaves the groups running (logged).

It never writes to the store: the node records outcomes (a finish is conditional on the
execution still running, so nothing is written over a recovery's or an abort's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import IO

from workers.gcpause import freeze_startup
from workers.node.groups import END_GRACE_S, end_groups, execution_groups
from workers.store import Store, create_store_engine, running_here

__all__ = ["Watchdog", "WatchdogConfig", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchdogConfig:
    """What the watchdog needs: the store (its URL travels on the pipe, never in argv), the
    member, how often it checks (s) and the SIGTERM -> SIGKILL grace (s)."""

    database_url: str
    member_uuid: str
    check_s: float
    grace_s: float = END_GRACE_S


class Watchdog:
    """The node's side: starts the watchdog process and tells it about each group.

    ``argv`` runs ``qwc node-watchdog`` (the CLI gives it with its own logging flags).
    :meth:`add` and :meth:`remove` only note the change; one thread (``watchdog-writer``)
    writes what was noted meanwhile in one write, after ``hold`` (the node's: wait, briefly,
    while the start path is busy — :meth:`workers.node.consumer.Quiet.hold`). A group
    added and removed before it was written is never written: a command that ran a few
    milliseconds costs the watchdog nothing. Until its line is written, a group is covered
    by the watchdog's end-of-file search (the node died: it is found by its environment),
    not by its periodic check (docs/executions.md, "Process groups"). Writes never raise: a
    watchdog that died is started again (and told every live group) on the next write.
    Thread-safe.
    """

    def __init__(
        self,
        argv: Sequence[str],
        config: WatchdogConfig,
        *,
        hold: Callable[[], object] = lambda: None,
    ) -> None:
        self._argv = list(argv)
        self._config = config
        self._hold = hold
        self._lock = threading.Lock()
        self._noted = threading.Condition(self._lock)
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: dict[int, str] = {}
        self._adds: dict[int, str] = {}  # groups not written yet
        self._removes: list[int] = []  # groups written, ended since, their end not written
        self._closing = False
        self._writer: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The watchdog's pid once started."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the watchdog process and the writer thread (idempotent)."""
        with self._lock:
            self._ensure_started()
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="watchdog-writer", daemon=True
                )
                self._writer.start()

    def add(self, pgid: int, execution_id: str) -> None:
        """Group ``pgid`` runs ``execution_id``'s command."""
        with self._lock:
            self._groups[pgid] = execution_id
            self._adds[pgid] = execution_id
            self._noted.notify()

    def remove(self, pgid: int) -> None:
        """Group ``pgid`` ended."""
        with self._lock:
            if self._groups.pop(pgid, None) is None:
                return
            if self._adds.pop(pgid, None) is None:  # its line was written: say it ended
                self._removes.append(pgid)
                self._noted.notify()

    def flush(self) -> None:
        """Write what was noted and not written yet, now."""
        with self._lock:
            self._write_noted()

    def close(self, timeout_s: float = 5.0) -> int | None:
        """Write what was noted, close its stdin (it ends what it still holds and exits)
        and wait for it; returns its exit code (None if never started or still running
        after ``timeout_s``)."""
        with self._lock:
            self._closing = True
            self._noted.notify()
            writer = self._writer
        if writer is not None:
            writer.join(timeout_s)
        with self._lock:
            self._write_noted()
            proc, self._proc = self._proc, None
        if proc is None:
            return None
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning(
                "watchdog %s: still running %.1f s after its stdin closed", proc.pid, timeout_s
            )
            return None

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                self._noted.wait_for(lambda: self._closing or self._adds or self._removes)
                if self._closing:
                    return  # close() writes the rest
            try:
                self._hold()
            except Exception:
                log.exception("watchdog writer: hold failed")
            with self._lock:
                self._write_noted()

    def _write_noted(self) -> None:
        """Under the lock: one write of every change noted (ends first: a group id reused
        after its group ended is added again after its end)."""
        if self._proc is None or not (self._adds or self._removes):
            return
        lines = [_ended_line(pgid) for pgid in self._removes]
        lines += [_started_line(pgid, eid) for pgid, eid in self._adds.items()]
        self._removes.clear()
        self._adds.clear()
        try:
            self._send("".join(lines))
        except Exception:  # e.g. a new watchdog could not be started: the next write tries
            log.exception(
                "watchdog: could not be told of %s change(s); the next write starts it "
                "again and tells it every live group",
                len(lines),
            )

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            log.error("watchdog %s exited (%s); starting it again", proc.pid, proc.returncode)
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, start_new_session=True)
        assert proc.stdin is not None
        self._proc = proc
        lines = [json.dumps(asdict(self._config)) + "\n"]
        lines += [_started_line(pgid, eid) for pgid, eid in self._groups.items()]
        self._adds.clear()  # told every live group: nothing noted is left to say
        self._removes.clear()
        self._write(proc, "".join(lines))
        log.info("watchdog %s: started for member %s", proc.pid, self._config.member_uuid)
        return proc

    def _send(self, line: str) -> None:
        # No poll per write (a waitpid under the lock): a dead watchdog shows as the write
        # failing (its pipe has no reader).
        proc = self._proc if self._proc is not None else self._ensure_started()
        if not self._write(proc, line):
            self._ensure_started()  # it died: the new one is told every live group

    @staticmethod
    def _write(proc: subprocess.Popen[bytes], text: str) -> bool:
        assert proc.stdin is not None
        try:
            proc.stdin.write(text.encode())
            proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            proc.poll()
            return False
        return True


def _started_line(pgid: int, execution_id: str) -> str:
    return f"+ {pgid} {execution_id}\n"


def _ended_line(pgid: int) -> str:
    return f"- {pgid}\n"


def main(stdin: IO[bytes]) -> int:
    """The watchdog process: read the config line, then follow the node (module docstring).
    Returns the exit code (0; 2 when the first line is not a config)."""
    try:
        config = WatchdogConfig(**json.loads(stdin.readline()))
    except (ValueError, TypeError) as exc:
        log.error("watchdog: no valid configuration on stdin: %s", exc)
        return 2
    log.info("watchdog: watching the process groups of member %s", config.member_uuid)
    groups: dict[int, str] = {}
    lock = threading.Lock()
    done = threading.Event()
    store = Store(create_store_engine(config.database_url))
    freeze_startup()  # its full collections walked ~60k objects (45 ms) in a node's burst
    checker = threading.Thread(
        target=_check_loop, args=(config, store, groups, lock, done), daemon=True
    )
    checker.start()
    for raw in stdin:
        _apply(raw.decode(errors="replace").split(), groups, lock)
    done.set()
    with lock:
        left = dict(groups)
    left.update(_untold(config, store, left))
    if left:
        log.warning(
            "watchdog: node of member %s is gone; ending %s process group(s) of executions %s",
            config.member_uuid,
            len(left),
            ", ".join(sorted(left.values())),
        )
        end_groups(list(left), grace_s=config.grace_s)
    checker.join(config.grace_s + 1.0)
    store.close()
    return 0


def _unknown(config: WatchdogConfig, told: dict[int, str]) -> dict[int, str]:
    """Groups of this member's executions the node did not tell about: found by their
    environment, started before now (a new node of the same member starts its own later)."""
    boot_clock = getattr(time, "CLOCK_BOOTTIME", None)
    if boot_clock is None:  # not Linux: no /proc to look in either
        return {}
    found = execution_groups(config.member_uuid, started_before_s=time.clock_gettime(boot_clock))
    return {g: e for g, e in found.items() if g not in told and g != os.getpgrp()}


def _stopped(pid: int, proc_dir: str = "/proc") -> bool:
    """True when process ``pid`` is stopped (SIGSTOP, a debugger), as /proc says."""
    try:
        with open(f"{proc_dir}/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"T", b"t")


def _untold(config: WatchdogConfig, store: Store, told: dict[int, str]) -> dict[int, str]:
    """Groups of executions the node started but had not told about yet when it died (it
    is killed between a spawn and its line, or before its writer wrote it):
    :func:`_unknown` whose execution is still ``running`` on this member in the store (a
    store that does not answer: none)."""
    found = _unknown(config, told)
    if not found:
        return {}
    try:
        still = running_here(store, config.member_uuid, found.values())
    except Exception as exc:
        log.warning("watchdog: cannot check the store: %s", exc)
        return {}
    untold = {g: e for g, e in found.items() if e in still}
    if untold:
        log.warning(
            "watchdog: the node of member %s died before telling of executions %s; "
            "ending their process groups too",
            config.member_uuid,
            ", ".join(sorted(untold.values())),
        )
    return untold


def _apply(words: list[str], groups: dict[int, str], lock: threading.Lock) -> None:
    with lock:
        if len(words) == 3 and words[0] == "+" and words[1].isdigit():
            groups[int(words[1])] = words[2]
        elif len(words) == 2 and words[0] == "-" and words[1].isdigit():
            groups.pop(int(words[1]), None)
        else:
            log.warning("watchdog: ignored line %r", " ".join(words))


def _check_loop(
    config: WatchdogConfig,
    store: Store,
    groups: dict[int, str],
    lock: threading.Lock,
    done: threading.Event,
) -> None:
    node_pid = os.getppid()
    while not done.wait(config.check_s):
        with lock:
            held = dict(groups)
        if _stopped(node_pid):  # its writer cannot tell of its newest groups: look for them
            held.update(_unknown(config, held))
        if not held:
            continue
        try:
            still = running_here(store, config.member_uuid, held.values())
        except Exception as exc:  # the store is down: the commands go on
            log.warning("watchdog: cannot check the store: %s", exc)
            continue
        gone = {pgid: eid for pgid, eid in held.items() if eid not in still}
        if not gone:
            continue
        log.warning(
            "watchdog: executions %s are no longer running on member %s in the store "
            "(recovered elsewhere or aborted); ending their process groups",
            ", ".join(sorted(gone.values())),
            config.member_uuid,
        )
        end_groups(list(gone), grace_s=config.grace_s)
        with lock:
            for pgid in gone:
                groups.pop(pgid, None)
