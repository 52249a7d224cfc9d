"""The execution pool in-process, with real commands: bounded slots, whole process groups
ended (grandchildren included), deadlines, the bounded output tail, the identity in the
environment; and the pool's settings."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.errors import ConfigError
from schemas.settings import load_settings
from tests.cluster import wait_for
from workers.node.groups import end_groups, group_alive
from workers.node.pool import TIMEDOUT, ExecutionPool, Run
from workers.node.runner import OUTPUT_TAIL_BYTES, Ended, Invocation, invocation_for
from workers.store import StartedExecution

ME = "aaaaaaaa-0000-4000-8000-000000000001"


def started(execution_id: str, command: tuple[str, ...] = ("true",)) -> StartedExecution:
    return StartedExecution(
        id=execution_id,
        job_id="job-1",
        member_uuid=ME,
        attempt=2,
        retry_of="first",
        trigger="retry",
        fire_ms=1_767_225_601_000,
        started_ms=1_767_225_601_005,
        command=command,
        retry_count=3,
        retry_delay_s=0.0,
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


def run(execution_id: str, argv: list[str], deadline_ms: int | None = None) -> Run:
    return Run(started(execution_id, tuple(argv)), Invocation(tuple(argv), {}, deadline_ms))


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


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
    assert ended.ended_by is not None and ended.ended_by.reason == "replaced"
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


def test_a_deadline_ends_the_group_as_timedout(
    pool: ExecutionPool, outcomes: Outcomes, tmp_path: Path
) -> None:
    now_ms = 1_000_000
    timed = ExecutionPool(1, record=outcomes, grace_s=0.5, clock_ms=lambda: now_ms)
    try:
        timed.submit(run("t", with_grandchild(tmp_path, "t"), deadline_ms=now_ms + 200))
        grandchild = grandchild_pid(tmp_path, "t")
        assert outcomes.wait("t").status == TIMEDOUT
        wait_for(lambda: not alive(grandchild), what="the grandchild gone")
    finally:
        timed.close()


def test_what_a_command_leaves_behind_in_its_group_is_ended_when_it_exits(
    pool: ExecutionPool, outcomes: Outcomes, tmp_path: Path
) -> None:
    pid_file = tmp_path / "left.pid"
    # the grandchild closes the output pipe, so the execution ends when sh exits
    argv = ["sh", "-c", f"sleep 30 >/dev/null 2>&1 & echo $! > {pid_file}; exit 4"]
    pool.submit(run("leaver", argv))
    ended = outcomes.wait("leaver")
    assert (ended.status, ended.exit_code) == ("failed", 4)
    assert not alive(int(pid_file.read_text()))


def test_identity_in_the_environment_and_a_bounded_tail(
    pool: ExecutionPool, outcomes: Outcomes
) -> None:
    code = (
        "import os, sys; sys.stdout.write('a' * 10000); "
        "print(' '.join(os.environ[k] for k in ('QWC_JOB_ID', 'QWC_EXECUTION_ID', "
        "'QWC_FIRE_TIME', 'QWC_ATTEMPT', 'QWC_MEMBER_UUID')))"
    )
    execution = started("env", (sys.executable, "-c", code))
    pool.submit(Run(execution, invocation_for(execution)))
    ended = outcomes.wait("env")
    assert ended.status == "succeeded"
    assert len(ended.output) == OUTPUT_TAIL_BYTES
    assert ended.output.endswith(f"aaajob-1 env 1767225601000 2 {ME}\n")


def test_a_command_that_cannot_start_is_failed_with_the_reason(
    pool: ExecutionPool, outcomes: Outcomes
) -> None:
    pool.submit(run("missing", ["/nonexistent/qwc-test-program"]))
    ended = outcomes.wait("missing")
    assert (ended.status, ended.exit_code) == ("failed", None)
    assert "/nonexistent/qwc-test-program" in ended.output
    pool.submit(run("empty", []))
    assert outcomes.wait("empty").status == "failed"


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
