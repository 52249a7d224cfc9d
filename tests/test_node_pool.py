"""The execution pool in-process, with real commands and a local HTTP server: bounded slots,
each executor kind run as :func:`workers.node.executors.prepare` says, whole process groups
ended (grandchildren included), the job's timeout, the bounded output (head and tail), the
identity in the environment and none of the member's settings; and the pool's settings."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import ConfigError
from schemas.settings import load_settings
from tests.cluster import alive, wait_for
from tests.http_server import Handler
from workers.jobs import executor_columns, parse_spec
from workers.node.groups import end_groups, group_alive
from workers.node.pool import TIMEDOUT, ExecutionPool
from workers.node.runner import Ended
from workers.store import StartedExecution

ME = "aaaaaaaa-0000-4000-8000-000000000001"
ROOT = Path(__file__).resolve().parent.parent
FIRE_MS = 1_767_225_601_000


def started(
    execution_id: str,
    command: tuple[str, ...] = ("true",),
    *,
    started_ms: int = FIRE_MS + 5,
    timeout_s: float | None = None,
    **executor: Any,
) -> StartedExecution:
    """A started execution (attempt 2 of job-1) of a command, or of the executor given as
    spec fields (``shell="..."``, ``http={...}``, ``python={...}``)."""
    kind, argv, spec = "command", command, {}
    if executor:
        kind, listed, spec = executor_columns(parse_spec({"name": "j", **executor}).executor)
        argv = tuple(listed)
    return StartedExecution(
        id=execution_id,
        job_id="job-1",
        member_uuid=ME,
        attempt=2,
        retry_of="first",
        trigger="retry",
        fire_ms=FIRE_MS,
        started_ms=started_ms,
        command=argv,
        retry_count=3,
        retry_delay_s=0.0,
        executor=kind,
        executor_spec=spec,
        timeout_s=timeout_s,
    )


class Outcomes:
    """What the pool recorded, by execution id, with an event per arrival."""

    def __init__(self) -> None:
        self.by_id: dict[str, Ended] = {}
        self.cond = threading.Condition()

    def __call__(self, ended: Ended) -> None:
        with self.cond:
            self.by_id[ended.execution.id] = ended
            self.cond.notify_all()

    def wait(self, execution_id: str, timeout_s: float = 10.0) -> Ended:
        with self.cond:
            assert self.cond.wait_for(lambda: execution_id in self.by_id, timeout_s), execution_id
            return self.by_id[execution_id]


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
def pool(outcomes: Outcomes) -> Iterator[ExecutionPool]:
    p = ExecutionPool(2, record=outcomes, grace_s=0.5)
    try:
        yield p
    finally:
        for eid in p.running_ids():
            p.end(eid, None, "test teardown")
        p.close()


def run(execution_id: str, argv: list[str], timeout_s: float | None = None) -> StartedExecution:
    return started(execution_id, tuple(argv), timeout_s=timeout_s)


def with_grandchild(tmp_path: Path, name: str, *, ignore_term: bool = False) -> list[str]:
    """``sh`` that starts a grandchild sleeping 30 s (its pid written to ``name``.pid) and
    waits for it; the grandchild ignores SIGTERM when asked."""
    trap = "trap '' TERM; " if ignore_term else ""
    pid_file = tmp_path / f"{name}.pid"
    return ["sh", "-c", f"{trap}sleep 30 & echo $! > {pid_file}; wait"]


def grandchild_pid(tmp_path: Path, name: str) -> int:
    pid_file = tmp_path / f"{name}.pid"
    return int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid"))


def test_at_most_slots_commands_run_at_once_and_a_long_one_holds_only_one(
    pool: ExecutionPool, outcomes: Outcomes, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    wait_gate = ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done"]
    pool.submit(run("long", wait_gate))
    assert pool.free_slots() == 1
    for i in range(3):  # quick ones go through the other slot, one after the other
        pool.submit(run(f"quick-{i}", ["true"]))
        assert outcomes.wait(f"quick-{i}").status == "succeeded"
        wait_for(lambda: pool.free_slots() == 1, what="the quick slot free again")
    pool.submit(run("second-long", wait_gate))
    assert pool.free_slots() == 0
    with pytest.raises(RuntimeError):
        pool.submit(run("one-too-many", ["true"]))
    gate.touch()
    assert outcomes.wait("long").status == "succeeded"
    assert pool.wait_idle(10)
    assert pool.free_slots() == 2


def test_end_ends_the_whole_group_and_records_the_status_asked(
    pool: ExecutionPool, outcomes: Outcomes, tmp_path: Path
) -> None:
    pool.submit(run("e", with_grandchild(tmp_path, "e")))
    grandchild = grandchild_pid(tmp_path, "e")
    assert pool.end("e", "aborted", "replaced")
    ended = outcomes.wait("e")
    assert (ended.status, ended.exit_code) == ("aborted", -signal.SIGTERM)
    assert ended.reason == "replaced"
    wait_for(lambda: not alive(grandchild), what="the grandchild gone")
    assert not pool.end("e", None, "again")  # not held any more


def test_end_without_a_status_records_nothing_and_kills_what_ignores_sigterm(
    pool: ExecutionPool, outcomes: Outcomes, tmp_path: Path
) -> None:
    pool.submit(run("stubborn", with_grandchild(tmp_path, "s", ignore_term=True)))
    grandchild = grandchild_pid(tmp_path, "s")
    assert pool.end("stubborn", None, "aborted by command c1")
    ended = outcomes.wait("stubborn")
    assert ended.status is None  # the caller recorded the outcome
    wait_for(lambda: not alive(grandchild), timeout_s=5, what="SIGKILL after the grace")


def test_the_jobs_timeout_counts_from_its_start_and_ends_the_group_as_timedout(
    outcomes: Outcomes, tmp_path: Path
) -> None:
    now_ms = FIRE_MS + 1000
    timed = ExecutionPool(1, record=outcomes, grace_s=0.5, clock_ms=lambda: now_ms)
    try:  # started 800 ms before now: 0.2 s of its 1 s are left
        argv = with_grandchild(tmp_path, "t")
        timed.submit(started("t", tuple(argv), started_ms=now_ms - 800, timeout_s=1))
        grandchild = grandchild_pid(tmp_path, "t")
        ended = outcomes.wait("t")
        assert (ended.status, ended.reason) == (TIMEDOUT, "timed out after 1 s")
        wait_for(lambda: not alive(grandchild), what="the grandchild gone")
        timed.submit(run("quick", ["true"], timeout_s=60))  # its deadline goes with it
        assert outcomes.wait("quick").status == "succeeded"
    finally:
        timed.close()


@pytest.mark.parametrize(
    "redirect",
    [">/dev/null 2>&1", ""],  # the grandchild lets the output pipe go, or holds it open
    ids=["pipe-closed", "pipe-held"],
)
def test_what_a_command_leaves_behind_in_its_group_is_ended_when_it_exits(
    pool: ExecutionPool, outcomes: Outcomes, tmp_path: Path, redirect: str
) -> None:
    pid_file = tmp_path / "left.pid"
    argv = ["sh", "-c", f"echo bye; sleep 30 {redirect} & echo $! > {pid_file}; exit 4"]
    pool.submit(run("leaver", argv))
    ended = outcomes.wait("leaver")  # not 30 s later: its slot is free once sh exits
    assert (ended.status, ended.exit_code, ended.output) == ("failed", 4, "bye\n")
    assert not alive(int(pid_file.read_text()))


def test_identity_in_the_environment_none_of_the_members_settings_and_a_bounded_output(
    outcomes: Outcomes,
) -> None:
    member_env = {"PATH": os.environ["PATH"], "QWC_DATABASE_URL": "postgresql://qwc:s3cret@db"}
    small = ExecutionPool(1, record=outcomes, output_max_bytes=1024, base_env=member_env)
    code = (
        "import os, sys; print('first'); sys.stdout.write('a' * 10000); "
        "print(' '.join(os.environ.get(k, '-') for k in ('QWC_JOB_ID', 'QWC_EXECUTION_ID', "
        "'QWC_FIRE_TIME', 'QWC_FIRE_TIME_MS', 'QWC_ATTEMPT', 'QWC_MEMBER_UUID', "
        "'QWC_DATABASE_URL')))"
    )
    try:
        small.submit(started("env", (sys.executable, "-c", code)))
        ended = outcomes.wait("env")
    finally:
        small.close()
    assert ended.status == "succeeded"
    assert ended.output.startswith("first\naaa")
    assert "bytes of output dropped" in ended.output
    identity = f"job-1 env 2026-01-01T00:00:01.000+00:00 {FIRE_MS} 2 {ME} -\n"
    assert ended.output.endswith("aaa" + identity)


def test_a_command_that_cannot_start_is_failed_with_the_reason(
    pool: ExecutionPool, outcomes: Outcomes
) -> None:
    pool.submit(run("missing", ["/nonexistent/qwc-test-program"]))
    ended = outcomes.wait("missing")
    assert (ended.status, ended.exit_code, ended.output) == ("failed", None, "")
    assert ended.reason is not None and "/nonexistent/qwc-test-program" in ended.reason
    pool.submit(run("empty", []))
    assert outcomes.wait("empty").status == "failed"


def test_a_shell_script_and_a_python_callable_run_in_the_pool(
    pool: ExecutionPool, outcomes: Outcomes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the callable's package is imported from the member's directory
    pool.submit(started("sh", shell='echo "attempt $QWC_ATTEMPT" | tr a-z A-Z; exit 3'))
    pool.submit(started("py", python={"callable": "tests.pycall_target:greet",
                                      "kwargs": {"name": "ann"}}))  # fmt: skip
    sh, py = outcomes.wait("sh"), outcomes.wait("py", timeout_s=30)
    assert (sh.status, sh.exit_code, sh.output) == ("failed", 3, "ATTEMPT 2\n")
    assert (py.status, py.exit_code) == ("succeeded", 0)
    assert py.output == 'hello ann\n{"name": "ann", "execution": "py"}\n'


def test_an_http_call_runs_in_a_slot_and_an_end_cancels_it(
    pool: ExecutionPool, outcomes: Outcomes, http_server: str
) -> None:
    pool.submit(started("ok", http={"method": "GET", "url": f"{http_server}/ok"}))
    ok = outcomes.wait("ok")
    assert (ok.status, ok.exit_code, ok.reason) == ("succeeded", None, None)
    head, body = ok.output.split("\n", 1)
    assert head == "HTTP 200 OK" and json.loads(body)["X-Qwc-Execution-Id"] == "ok"
    pool.submit(started("slow", http={"method": "GET", "url": f"{http_server}/dribble"}))
    assert Handler.dribbling.wait(10)
    assert pool.end("slow", "aborted", "replaced by x")
    ended = outcomes.wait("slow")
    assert (ended.status, ended.reason) == ("aborted", "replaced by x")
    assert ended.output.startswith("HTTP 200 OK\n.")
    Handler.release.set()


def test_the_jobs_timeout_ends_an_http_call_as_timedout(
    pool: ExecutionPool, outcomes: Outcomes, http_server: str
) -> None:
    spec = {"method": "GET", "url": f"{http_server}/slow", "timeout": 30}
    pool.submit(started("slow", http=spec, timeout_s=0.3))
    ended = outcomes.wait("slow")
    assert (ended.status, ended.reason) == (TIMEDOUT, "timed out after 0.3 s")


def test_a_job_whose_executor_cannot_be_prepared_is_failed_with_the_reason(
    pool: ExecutionPool, outcomes: Outcomes
) -> None:
    corrupt = started("bad", ("true",))
    pool.submit(StartedExecution(**{**corrupt.__dict__, "executor": "http", "executor_spec": {}}))
    ended = outcomes.wait("bad")
    assert (ended.status, ended.exit_code) == ("failed", None)
    assert ended.reason is not None and ended.reason.startswith("cannot run job job-1:")
    assert "url" in ended.reason


def test_end_groups_escalates_to_sigkill_after_the_grace(tmp_path: Path) -> None:
    import subprocess

    pid_file = tmp_path / "g.pid"
    proc = subprocess.Popen(
        ["sh", "-c", f"trap '' TERM; sleep 30 & echo $! > {pid_file}; wait"],
        start_new_session=True,
    )
    try:
        grandchild = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="pid"))
        assert end_groups([proc.pid], grace_s=0.3) == [proc.pid]
        proc.wait(5)
        wait_for(lambda: not alive(grandchild), what="killed")
        assert not group_alive(proc.pid) or not alive(grandchild)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_thread_count_setting_its_quartz_alias_and_bounds(tmp_path: Path) -> None:
    assert load_settings(environ={}).executions_thread_count == 10
    assert load_settings(environ={}).executions_drain_timeout_s == 30.0
    config = tmp_path / "qwcontrol-config.properties"
    config.write_text("quartz.threadPool.threadCount = 4\nqwcontrol.executions.drainTimeout=2.5\n")
    loaded = load_settings(config, environ={})
    assert (loaded.executions_thread_count, loaded.executions_drain_timeout_s) == (4, 2.5)
    both = {"QWC_EXECUTIONS_THREADCOUNT": "5"}
    with pytest.raises(ConfigError, match="set only one of"):
        load_settings(config, environ={**both, "QWC_QUARTZ_THREADPOOL_THREADCOUNT": "6"})
    for bad in ("0", "1001", "2.5", "ten"):
        with pytest.raises(ConfigError, match=r"qwcontrol\.executions\.threadCount"):
            load_settings(environ={"QWC_EXECUTIONS_THREADCOUNT": bad})
    with pytest.raises(ConfigError, match=r"qwcontrol\.executions\.drainTimeout"):
        load_settings(environ={"QWC_EXECUTIONS_DRAINTIMEOUT": "-1"})
