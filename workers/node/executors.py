"""What an execution runs, for each executor kind, and the environment it runs in.

:func:`prepare` turns a job and the identity of one of its executions into what the
member's pool runs:

* :class:`ProcessRun` (``command``, ``shell``, ``python``): an argv and an environment. The
  pool starts it with stdin closed, stdout and stderr together into an
  :class:`~workers.node.output.OutputCollector`, in a process group of its own, so a
  timeout, an abort, a replacement or a drain ends the whole group the same way for every
  kind. ``command`` is the job's argv; ``shell`` is ``/bin/sh -c <script>``; ``python`` is
  ``<this interpreter> -m workers.node.pycall pkg.module:function`` with the keyword
  arguments in ``QWC_PYCALL_KWARGS`` (:mod:`workers.node.pycall` imports and calls it).
* :class:`HttpRun` (``http``): a call made in the pool's thread with httpx
  (:func:`run_http`); no process to end, so it stops at its deadline (the job's timeout or
  the request's, the smaller) or, when the pool sets ``cancel``, at the next chunk of the
  answer (at most ``timeout_s`` later: a read never blocks longer).

The identity of an execution is in its environment, built only by :func:`execution_env`:
``QWC_JOB_ID``, ``QWC_EXECUTION_ID``, ``QWC_FIRE_TIME`` (ISO 8601 UTC), ``QWC_FIRE_TIME_MS``
(epoch ms), ``QWC_ATTEMPT``, ``QWC_MEMBER_UUID``; the member's own ``QWC_*`` variables
(settings, among them database and Redis URLs with passwords) are left out. An HTTP call
sends the same as ``X-Qwc-…`` headers.

Why a Python callable runs in a child process rather than in the member: it can then be
stopped like any command (its group ends; a thread cannot be killed), a crash, a leak or a
blocking C call of the user's code never harms the member, and each run imports the code
as deployed now. It is what RQ does with a job (import ``pkg.module.function`` by name,
call it with keyword arguments, in a work horse process it can kill on timeout), with the
difference that the whole process group ends, grandchildren included.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from workers.jobs.executor import (
    CommandExecutor,
    HttpExecutor,
    PythonExecutor,
    ShellExecutor,
    executor_of,
)
from workers.liveness.listing import iso_utc
from workers.node.groups import EXECUTION_ID_VAR, MEMBER_UUID_VAR
from workers.node.output import OutputCollector

__all__ = [
    "ENV_PREFIX",
    "PYCALL_KWARGS_ENV",
    "SHELL",
    "ExecutionIdentity",
    "HttpRun",
    "Outcome",
    "ProcessRun",
    "execution_env",
    "inherited_env",
    "prepare",
    "run_http",
    "timed_out_reason",
]

ENV_PREFIX = "QWC_"  # the member's settings: never passed on to what an execution runs
PYCALL_KWARGS_ENV = "QWC_PYCALL_KWARGS"
SHELL = "/bin/sh"


class RunsAJob(Protocol):
    """What :func:`prepare` reads of a job: its executor columns (a
    :class:`workers.store.JobRow`, or the :class:`workers.store.StartedExecution` the pool
    runs)."""

    @property
    def executor(self) -> str: ...

    @property
    def command(self) -> Sequence[str]: ...

    @property
    def executor_spec(self) -> Mapping[str, Any]: ...


class IsAnExecution(Protocol):
    """What :meth:`ExecutionIdentity.of` reads of an execution (a
    :class:`workers.store.ExecutionRow` or :class:`workers.store.StartedExecution`)."""

    @property
    def id(self) -> str: ...

    @property
    def job_id(self) -> str: ...

    @property
    def fire_ms(self) -> int: ...

    @property
    def attempt(self) -> int: ...

    @property
    def member_uuid(self) -> str: ...


def timed_out_reason(timeout_s: float) -> str:
    """The reason of a ``timedout`` execution, whichever kind it runs."""
    return f"timed out after {timeout_s:g} s"


@dataclass(frozen=True)
class ExecutionIdentity:
    """Who an execution is: its job, its id, the time it was due (epoch ms), its attempt
    (1 for the first run) and the member running it."""

    job_id: str
    execution_id: str
    fire_ms: int
    attempt: int
    member_uuid: str

    @classmethod
    def of(cls, execution: IsAnExecution) -> ExecutionIdentity:
        """The identity of a stored execution."""
        return cls(
            execution.job_id, execution.id, execution.fire_ms, execution.attempt,
            execution.member_uuid,
        )  # fmt: skip

    def variables(self) -> dict[str, str]:
        """The ``QWC_*`` variables of the execution."""
        return {
            "QWC_JOB_ID": self.job_id,
            EXECUTION_ID_VAR: self.execution_id,
            "QWC_FIRE_TIME": _fire_time(self.fire_ms),
            "QWC_FIRE_TIME_MS": str(self.fire_ms),
            "QWC_ATTEMPT": str(self.attempt),
            MEMBER_UUID_VAR: self.member_uuid,
        }

    def headers(self) -> dict[str, str]:
        """The same as HTTP headers: ``QWC_JOB_ID`` -> ``X-Qwc-Job-Id``."""
        return {
            "X-Qwc-" + "-".join(w.capitalize() for w in name[4:].split("_")): value
            for name, value in self.variables().items()
        }


@functools.lru_cache(maxsize=256)
def _fire_time(fire_ms: int) -> str:
    """``QWC_FIRE_TIME`` of ``fire_ms``: formatted once for a burst's executions, which
    share their fire time (formatting cost about 10 µs of the member's CPU each)."""
    return iso_utc(fire_ms) or ""


def inherited_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What an execution inherits: ``base`` (default: this process's environment, read
    now) without its ``QWC_*`` variables."""
    inherited = os.environ if base is None else base
    return {k: v for k, v in inherited.items() if not k.startswith(ENV_PREFIX)}


def execution_env(
    identity: ExecutionIdentity, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an execution: :func:`inherited_env` of ``base`` plus the
    execution's identity."""
    return inherited_env(base) | identity.variables()


@dataclass(frozen=True)
class ProcessRun:
    """A process to start: ``argv`` with ``env`` (its whole environment)."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``status`` (``succeeded``, ``failed``, ``timedout``), the kept
    ``output``, ``reason`` in words, ``http_status`` (None: no answer). ``stopped``: it was
    cancelled, and the caller records its own final status."""

    status: str
    output: str
    reason: str | None = None
    http_status: int | None = None
    stopped: bool = False


@dataclass(frozen=True)
class HttpRun:
    """An HTTP call to make; ``run`` makes it (see :func:`run_http`)."""

    spec: HttpExecutor
    identity: ExecutionIdentity

    def run(
        self,
        *,
        max_bytes: int,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Outcome:
        """:func:`run_http` of this call."""
        return run_http(
            self.spec, self.identity, max_bytes=max_bytes, timeout_s=timeout_s, cancel=cancel
        )


def prepare(
    job: RunsAJob,
    identity: ExecutionIdentity,
    *,
    base_env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> ProcessRun | HttpRun:
    """What to run for an execution of ``job``. ``python`` is the interpreter of a
    ``python`` job (default: the member's own, whose packages it imports). Raises
    ``ValueError`` when the job's executor columns are not valid."""
    executor = executor_of(job.executor, job.command, job.executor_spec)
    if isinstance(executor, HttpExecutor):
        return HttpRun(executor, identity)
    env = execution_env(identity, base_env)
    if isinstance(executor, CommandExecutor):
        return ProcessRun(executor.argv, env)
    if isinstance(executor, ShellExecutor):
        return ProcessRun((SHELL, "-c", executor.script), env)
    assert isinstance(executor, PythonExecutor)
    env[PYCALL_KWARGS_ENV] = json.dumps(executor.kwargs)
    return ProcessRun((python, "-m", "workers.node.pycall", executor.callable), env)


def run_http(
    spec: HttpExecutor,
    identity: ExecutionIdentity,
    *,
    max_bytes: int,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
) -> Outcome:
    """Make the request of ``spec``; never raises for what the network or server does.

    ``succeeded`` when the answer's status is ``spec.expect_status`` (None: any 2xx);
    ``failed`` for another status, no answer, or no answer within ``spec.timeout_s``;
    ``timedout`` when the job's ``timeout_s`` (smaller than the request's) ran out. The
    output is ``HTTP <status> <reason>`` and the body, bounded by ``max_bytes`` (head and
    tail). ``cancel`` set: stops at the next chunk, ``stopped``.
    """
    job_limit = timeout_s is not None and timeout_s < spec.timeout_s
    limit_s = timeout_s if timeout_s is not None and job_limit else spec.timeout_s
    deadline = time.monotonic() + limit_s
    collector = OutputCollector(max_bytes)
    headers = identity.headers() | spec.headers
    try:
        with (
            httpx.Client(timeout=limit_s) as client,
            client.stream(spec.method, spec.url, headers=headers, content=spec.body) as answer,
        ):
            collector.feed(f"HTTP {answer.status_code} {answer.reason_phrase}\n".encode())
            for chunk in answer.iter_bytes():  # as they come (a size would wait to fill it)
                collector.feed(chunk)
                if cancel is not None and cancel.is_set():
                    text = collector.text()
                    return Outcome("failed", text, "cancelled", answer.status_code, stopped=True)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer took too long")
            status = answer.status_code
    except httpx.TimeoutException as exc:
        return _timed_out(collector, limit_s, job_limit, exc)
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        collector.feed(f"{type(exc).__name__}: {exc}\n".encode())
        return Outcome("failed", collector.text(), f"no answer from {spec.url}: {exc}")
    return _judged(spec, status, collector)


def _timed_out(
    collector: OutputCollector, limit_s: float, job_limit: bool, exc: Exception
) -> Outcome:
    collector.feed(f"{type(exc).__name__}: {exc}\n".encode())
    if job_limit:
        return Outcome("timedout", collector.text(), timed_out_reason(limit_s))
    return Outcome("failed", collector.text(), f"HTTP timeout: no answer within {limit_s:g} s")


def _judged(spec: HttpExecutor, status: int, collector: OutputCollector) -> Outcome:
    expected = spec.expect_status
    ok = status == expected if expected is not None else 200 <= status < 300
    if ok:
        return Outcome("succeeded", collector.text(), None, status)
    wanted = str(expected) if expected is not None else "2xx"
    return Outcome("failed", collector.text(), f"HTTP {status}, expected {wanted}", status)
