"""The node's watchdog as a real ``qwc node-watchdog`` process: on end of input (the node is
gone) it ends every group it holds; while it runs it ends the groups of executions the
store no longer has running on its member; a watchdog that died is started again and told
every live group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import alive, wait_for
from workers.node.groups import execution_groups
from workers.node.node import watchdog_argv
from workers.node.watchdog import Watchdog, WatchdogConfig
from workers.store import (
    Store,
    abort_execution,
    create_job,
    insert_execution,
    start_execution,
)

ME = "aaaaaaaa-0000-4000-8000-000000000001"


class Group:
    """``sh`` in a session of its own with a grandchild sleeping 30 s (reaped by a thread of
    the test, as the node's slot would)."""

    def __init__(self, tmp_path: Path, name: str, env: dict[str, str] | None = None) -> None:
        pid_file = tmp_path / f"{name}.pid"
        self.proc = subprocess.Popen(
            ["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"],
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )
        self.pgid = self.proc.pid
        self.grandchild = int(
            wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid")
        )

    def gone(self) -> bool:
        self.proc.poll()
        return self.proc.returncode is not None and not alive(self.grandchild)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def groups(tmp_path: Path) -> Iterator[list[Group]]:
    made: list[Group] = []
    yield made
    for g in made:
        g.cleanup()


def test_a_group_that_ended_before_its_line_was_written_is_never_written(
    tmp_path: Path,
) -> None:
    """The lines wait for the writer's hold (the node's start path) and go out in one write;
    a command that ended meanwhile costs the watchdog nothing."""
    told = tmp_path / "told"
    gate = threading.Event()
    dog = Watchdog(
        ["sh", "-c", f"cat > {told}"],  # stands in for the watchdog: keeps what it is told
        WatchdogConfig("sqlite://", ME, 60),
        hold=lambda: gate.wait(10),
    )
    dog.start()
    try:
        dog.add(101, "short")
        dog.add(102, "long")
        dog.remove(101)  # ended before the writer let go
        gate.set()

        def written(line: str) -> bool:
            return told.exists() and line in told.read_text()

        wait_for(lambda: written("+ 102 long"), what="the long one written")
        dog.remove(102)
        wait_for(lambda: written("- 102"), what="its end written")
        dog.add(101, "reused")  # the id of a group that ended, reused: told again
    finally:
        dog.close()
    lines = told.read_text().splitlines()[1:]  # after the config line
    assert lines == ["+ 102 long", "- 102", "+ 101 reused"]


def watchdog_for(db_url: str, check_s: float = 0.1, member: str = ME) -> Watchdog:
    argv = [sys.executable, "-m", "workers.cli", "-v", "node-watchdog"]
    assert watchdog_argv(["-v"]) == argv
    return Watchdog(argv, WatchdogConfig(db_url, member, check_s, grace_s=0.5))


def running_execution(store: Store, member: str = ME) -> str:
    job = create_job(
        store,
        project="p",
        group_name="",
        name=f"j-{os.urandom(4).hex()}",
        command=["true"],
        schedule=None,
        modified_by=member,
        now_ms=1,
    ).id
    eid = insert_execution(
        store, job_id=job, member_uuid=member, trigger="manual", fire_ms=1, now_ms=1
    )
    assert start_execution(store, eid, now_ms=2, member_uuid=member)
    return eid


def test_end_of_input_ends_every_group_it_holds(
    store: Store, db_url: str, tmp_path: Path, groups: list[Group]
) -> None:
    dog = watchdog_for(db_url, check_s=60)
    dog.start()
    kept, removed = Group(tmp_path, "kept"), Group(tmp_path, "removed")
    groups += [kept, removed]
    dog.add(kept.pgid, "e1")
    dog.add(removed.pgid, "e2")
    dog.remove(removed.pgid)  # the node was done with it: not the watchdog's any more
    assert dog.close() == 0
    wait_for(kept.gone, what="the held group ended")
    assert not removed.gone()


def test_end_of_input_also_ends_a_running_execution_it_was_not_told_about(
    store: Store, db_url: str, tmp_path: Path, groups: list[Group]
) -> None:
    """The node died between a spawn and its line to the watchdog: the group is found by
    its environment and ended, if its execution is running on this member in the store."""
    me = str(uuid.uuid4())  # its own: other tests' processes run beside it
    running, ended = running_execution(store, me), running_execution(store, me)
    assert abort_execution(store, ended, now_ms=3) is not None

    def execution(eid: str, member: str = me) -> dict[str, str]:
        return {"QWC_MEMBER_UUID": member, "QWC_EXECUTION_ID": eid}

    untold = Group(tmp_path, "untold", execution(running))
    left = Group(tmp_path, "left", execution(ended))  # its execution ended: not ours to end
    other = Group(tmp_path, "other", execution(running, str(uuid.uuid4())))
    groups += [untold, left, other]
    found = execution_groups(me, started_before_s=time.clock_gettime(time.CLOCK_BOOTTIME))
    assert found == {untold.pgid: running, left.pgid: ended}
    assert execution_groups(me, started_before_s=0.0) == {}  # started later: not found
    dog = watchdog_for(db_url, check_s=60, member=me)
    dog.start()
    assert dog.close() == 0
    wait_for(untold.gone, what="the untold group ended")
    assert not left.gone() and not other.gone()


def test_a_group_whose_execution_left_this_member_in_the_store_is_ended(
    store: Store, db_url: str, tmp_path: Path, groups: list[Group]
) -> None:
    stays, aborted = running_execution(store), running_execution(store)
    dog = watchdog_for(db_url)
    dog.start()
    try:
        mine, theirs = Group(tmp_path, "mine"), Group(tmp_path, "theirs")
        groups += [mine, theirs]
        dog.add(mine.pgid, stays)
        dog.add(theirs.pgid, aborted)
        assert abort_execution(store, aborted, now_ms=3) is not None
        wait_for(theirs.gone, what="the aborted execution's group ended")
        assert not mine.gone()
    finally:
        dog.close()
    wait_for(mine.gone, what="ended at the end")


def test_a_dead_watchdog_is_started_again_and_told_every_live_group(
    store: Store, db_url: str, tmp_path: Path, groups: list[Group]
) -> None:
    dog = watchdog_for(db_url, check_s=60)
    dog.start()
    first = dog.pid
    assert first is not None
    g = Group(tmp_path, "g")
    groups.append(g)
    dog.add(g.pgid, "e1")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="the first watchdog dead")
    other = Group(tmp_path, "other")
    groups.append(other)
    dog.add(other.pgid, "e2")  # the write finds it dead: a new one, told both groups
    wait_for(lambda: dog.pid not in (None, first), what="a new watchdog")
    dog.close()
    wait_for(lambda: g.gone() and other.gone(), what="both groups ended by the new one")


def test_while_the_node_is_stopped_its_untold_groups_are_checked_too(
    store: Store, db_url: str, tmp_path: Path, groups: list[Group]
) -> None:
    """A node paused (SIGSTOP) before its writer told of a group: the watchdog finds the
    group by its environment and ends it once the store has its execution elsewhere."""
    me = str(uuid.uuid4())  # its own: other tests' processes run beside it
    stays, recovered = running_execution(store, me), running_execution(store, me)
    with subprocess.Popen(  # stands in for the node: the watchdog's parent
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from workers.node.node import watchdog_argv\n"
            "from workers.node.watchdog import Watchdog, WatchdogConfig\n"
            f"dog = Watchdog(watchdog_argv(), WatchdogConfig({db_url!r}, {me!r}, 0.1, 0.5))\n"
            "dog.start()\n"
            "print(dog.pid, flush=True)\n"
            "sys.stdin.read()\n"
            "dog.close()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as node:
        try:
            assert node.stdout is not None and node.stdin is not None
            dog_pid = int(node.stdout.readline())

            def execution(eid: str) -> dict[str, str]:
                return {"QWC_MEMBER_UUID": me, "QWC_EXECUTION_ID": eid}

            mine = Group(tmp_path, "mine", execution(stays))
            theirs = Group(tmp_path, "theirs", execution(recovered))
            groups += [mine, theirs]
            os.kill(node.pid, signal.SIGSTOP)
            assert abort_execution(store, recovered, now_ms=3) is not None
            wait_for(theirs.gone, what="the group of the execution it no longer runs ended")
            assert not mine.gone()
            os.kill(node.pid, signal.SIGCONT)
            node.stdin.close()  # the node exits: its watchdog ends what is left
            assert node.wait(10) == 0
            wait_for(lambda: not alive(dog_pid), what="the watchdog exited")
            wait_for(mine.gone, what="the running one ended at the end")
        finally:
            if node.poll() is None:
                os.kill(node.pid, signal.SIGCONT)
                node.kill()
                node.wait()


def test_a_watchdog_that_cannot_be_started_again_is_tried_at_the_next_write(
    store: Store, db_url: str, tmp_path: Path, groups: list[Group]
) -> None:
    """The writer thread outlives a failed restart (the program cannot be run): the next
    change starts the watchdog and tells it every live group."""
    dog = watchdog_for(db_url, check_s=60)
    dog.start()
    first = dog.pid
    assert first is not None
    argv = dog._argv
    dog._argv = [str(tmp_path / "no-such-program")]  # a restart now fails
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="the first watchdog dead")
    g = Group(tmp_path, "g")
    groups.append(g)
    dog.add(g.pgid, "e1")  # the write finds it dead; starting another fails (logged)
    dog.flush()
    dog._argv = argv
    other = Group(tmp_path, "other")
    groups.append(other)
    dog.add(other.pgid, "e2")  # the writer is still there: a new one, told both groups
    wait_for(lambda: dog.pid not in (None, first), what="a new watchdog")
    dog.close()
    wait_for(lambda: g.gone() and other.gone(), what="both groups ended by the new one")
