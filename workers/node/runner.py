"""The RQ task a node runs for each execution: run the job's command and record the outcome.

:func:`run_execution` is enqueued by the member on its queue ``qwc-<member uuid>`` and
performed by the node's RQ worker (in a work horse forked per job). It moves the execution
``scheduled`` -> ``running`` (with the RQ job id) — only while it is still ``scheduled`` and
still assigned to this member —, runs the job's command (read from the store: nothing but
the execution id travels through Redis) without a shell (stdin closed, stdout and stderr
captured together, no timeout), then ``succeeded`` (exit code 0) or ``failed``, with the exit
code and the last :data:`OUTPUT_TAIL_BYTES` of the output. A failed execution of a job with
retries left gets its retry in the same transaction (attempt + 1, on this member, not before
the job's retry delay; the member enqueues it when due). An execution that is no longer
``scheduled`` here when the task starts (aborted, moved, or marked ``incomplete`` by a
recovery) is not run. An aborted execution's work horse is killed (RQ's stop-job command):
no outcome is written by the task, and there is no retry.

While the command runs, the task re-reads its execution every ``check_every_s`` (the
member's heartbeat interval): once the store no longer has it ``running`` on this member —
marked ``incomplete`` and retried elsewhere by a recovery while this member was cut off
from Redis or paused, or aborted while the stop-job command could not reach it — the
command is killed and no outcome is written. The store is the authority on who runs an
execution; a store that cannot be read leaves the command running.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rq import get_current_job

from workers.recovery.decide import next_retry
from workers.store import (
    create_store_engine,
    finish_execution,
    get_execution,
    get_job,
    start_execution,
)

__all__ = [
    "OUTPUT_TAIL_BYTES",
    "STORE_CHECK_S",
    "CommandOutcome",
    "run_command",
    "run_execution",
    "use_database",
]

log = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 4096
STORE_CHECK_S = 5.0  # default for how often a running command's execution is re-read
_CHUNK_BYTES = 65536


@dataclass(frozen=True)
class CommandOutcome:
    """How a command ended. ``exit_code`` is None when it could not be started; negative
    when a signal killed it (``-signal``). ``output_tail`` is the end of stdout+stderr.
    ``stopped``: killed because ``keep_running`` said no."""

    exit_code: int | None
    output_tail: str
    stopped: bool = False

    @property
    def status(self) -> str:
        """``succeeded`` for exit code 0, else ``failed``."""
        return "succeeded" if self.exit_code == 0 else "failed"


def run_command(
    argv: Sequence[str],
    *,
    tail_bytes: int = OUTPUT_TAIL_BYTES,
    keep_running: Callable[[], bool] | None = None,
    check_every_s: float = STORE_CHECK_S,
) -> CommandOutcome:
    """Run ``argv`` (no shell, no timeout) and keep the last ``tail_bytes`` of its output.

    A command that cannot be started (not found, not executable, empty argv) gives
    ``exit_code`` None and the error as the output; nothing is raised for it. When given,
    ``keep_running`` is asked every ``check_every_s`` while the command runs; False kills
    the command (``stopped``); an exception from it is logged and the command goes on.
    """
    if not argv:
        return CommandOutcome(None, "empty command")
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        return CommandOutcome(None, f"cannot run {argv[0]!r}: {exc}")
    tail: collections.deque[bytes] = collections.deque()
    kept = 0
    assert proc.stdout is not None
    done, stopped = threading.Event(), threading.Event()
    if keep_running is not None:
        watcher = threading.Thread(
            target=_watch, args=(proc, keep_running, check_every_s, done, stopped), daemon=True
        )
        watcher.start()
    with proc:
        while chunk := proc.stdout.read(_CHUNK_BYTES):
            tail.append(chunk)
            kept += len(chunk)
            while len(tail) > 1 and kept - len(tail[0]) >= tail_bytes:  # bounded memory
                kept -= len(tail.popleft())
        exit_code = proc.wait()
    done.set()
    output = b"".join(tail)[-tail_bytes:] if tail_bytes > 0 else b""
    return CommandOutcome(exit_code, output.decode("utf-8", errors="replace"), stopped.is_set())


def _watch(
    proc: subprocess.Popen[bytes],
    keep_running: Callable[[], bool],
    every_s: float,
    done: threading.Event,
    stopped: threading.Event,
) -> None:
    while not done.wait(every_s):
        try:
            go_on = keep_running()
        except Exception as exc:  # the store is down: the command goes on
            log.warning("command %s: cannot check whether to go on: %s", proc.pid, exc)
            continue
        if not go_on and not done.is_set():
            stopped.set()
            proc.kill()
            return


_database_url: str | None = None
_member_uuid: str | None = None
_check_every_s: float = STORE_CHECK_S


def use_database(
    url: str, member_uuid: str | None = None, *, check_every_s: float = STORE_CHECK_S
) -> None:
    """Set the store URL the tasks of this process use, the member they run for (the start
    fence; None: any member) and how often a running command's execution is re-read. The
    node calls it before it forks its RQ worker, so the URL (and any password in it) never
    travels through Redis."""
    global _database_url, _member_uuid, _check_every_s
    _database_url = url
    _member_uuid = member_uuid
    _check_every_s = check_every_s


def run_execution(execution_id: str) -> str:
    """The RQ task: run execution ``execution_id`` (the command of its job), recorded in
    the store given to ``use_database``. Returns the final status, or ``skipped`` when the
    execution was not ``scheduled`` on this member any more. Store errors propagate (RQ
    records the job failed); RuntimeError when no store was set."""
    if _database_url is None:
        raise RuntimeError("run_execution: no store configured (use_database was not called)")
    engine = create_store_engine(_database_url)
    try:
        execution = get_execution(engine, execution_id)
        job = get_job(engine, execution.job_id)
        current = get_current_job()
        rq_job_id = current.id if current is not None else None
        if not start_execution(
            engine, execution_id, now_ms=_now_ms(), member_uuid=_member_uuid, rq_job_id=rq_job_id
        ):
            log.warning("execution %s: not scheduled here any more; not run", execution_id)
            return "skipped"

        def still_here() -> bool:
            now = get_execution(engine, execution_id)
            return now.status == "running" and now.member_uuid == execution.member_uuid

        outcome = run_command(job.command, keep_running=still_here, check_every_s=_check_every_s)
        if outcome.stopped:
            log.warning(
                "execution %s: no longer running on this member in the store (recovered "
                "elsewhere or aborted); its command was killed",
                execution_id,
            )
            return "stopped"
        now_ms = _now_ms()
        retry = None
        if outcome.status == "failed":
            retry = next_retry(
                execution_id=execution_id,
                retry_of=execution.retry_of,
                job_id=job.id,
                attempt=execution.attempt,
                retry_count=job.retry_count,
                retry_delay_s=job.retry_delay_s,
                to_uuid=execution.member_uuid,
                now_ms=now_ms,
                new_id=str(uuid.uuid4()),
            )
        finished = finish_execution(
            engine,
            execution_id,
            status=outcome.status,
            now_ms=now_ms,
            exit_code=outcome.exit_code,
            output_tail=outcome.output_tail,
            retry=retry,
        )
        log.info("execution %s: %s (exit %s)", execution_id, outcome.status, outcome.exit_code)
        if finished and retry is not None:
            log.info(
                "execution %s: retry %s (attempt %s) at %s ms",
                execution_id,
                retry.id,
                retry.attempt,
                retry.fire_ms,
            )
        return outcome.status
    finally:
        engine.dispose()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
