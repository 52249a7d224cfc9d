"""Recover executions end to end: real nodes, liveness and recovery workers, real Redis and
SQL. A member is SIGKILLed while it runs executions; they become ``incomplete`` and those
of jobs with retries left run again on another member. Only what needs real processes lives
here (SIGKILL and SIGSTOP of members and replicas, on both stacks); the worker's decisions
are tested in-process in tests/test_recovery_worker.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.keys import GROUP_RECOVERY, Keys
from tests.cluster import Cluster, membership_changes, new_uuid, wait_for
from tests.test_node_live import pid_gone
from workers.liveness.view import read_snapshot
from workers.store import (
    ExecutionRow,
    RecoveryRow,
    Store,
    create_job,
    create_store_engine,
    get_execution,
    insert_execution,
    list_executions,
    list_recoveries,
)

pytestmark = pytest.mark.processes

KEYS = Keys()
DELAY_MS, RETRY_DELAY_S = 500, 0.5
RECOVERY_ENV = {
    "QWC_CLUSTERMODE_RECOVEREXECUTIONS_ENABLED": "true",
    "QWC_CLUSTERMODE_RECOVEREXECUTIONS_DELAY": str(DELAY_MS / 1000),
    "QWC_CLUSTERMODE_RECOVEREXECUTIONS_SLEEP": "4",
}
# uuids that sort before any random one: a destination chosen by uuid alone among
# all members would be the passive or the dead member
PASSIVE, DEAD_FIRST = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"


@pytest.fixture
def rc(cluster: Cluster) -> Iterator[Cluster]:
    cluster.extra_env.update(RECOVERY_ENV)
    yield cluster


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Db:
    """Short-lived store connections for the test's reads and writes."""

    def __init__(self, c: Cluster) -> None:
        self.url = c.database_url

    def _store(self) -> Store:
        return Store(create_store_engine(self.url))

    def job(self, name: str, command: list[str], *, owner: str, retry_count: int = 0) -> str:
        """A job without a schedule owned by ``owner``: a member of the test that stays
        alive (an owner nobody runs would be found dead by the liveness worker's scan at
        some point, and counted by the mass-failure guard with the test's victims)."""
        store = self._store()
        try:
            return create_job(
                store,
                project="p",
                group_name="g",
                name=name,
                command=command,
                schedule=None,
                modified_by=owner,
                now_ms=now_ms(),
                retry_count=retry_count,
                retry_delay_s=RETRY_DELAY_S if retry_count else 0.0,
            ).id
        finally:
            store.close()

    def run_on(self, job_id: str, member: str) -> str:
        """An execution of ``job_id`` assigned to ``member``, due now: the member runs it."""
        store = self._store()
        try:
            return insert_execution(
                store,
                job_id=job_id,
                member_uuid=member,
                trigger="manual",
                fire_ms=now_ms(),
                now_ms=now_ms(),
            )
        finally:
            store.close()

    def execution(self, execution_id: str) -> ExecutionRow:
        store = self._store()
        try:
            return get_execution(store, execution_id)
        finally:
            store.close()

    def retries(self, execution_id: str) -> list[ExecutionRow]:
        store = self._store()
        try:
            return list_executions(store, retry_of=execution_id)
        finally:
            store.close()

    def recoveries(self, outcome: str | None = None) -> list[RecoveryRow]:
        store = self._store()
        try:
            return [r for r in list_recoveries(store) if outcome in (None, r.outcome)]
        finally:
            store.close()


def once_then_quick(tmp: Path, name: str) -> list[str]:
    """A command that runs 30 s the first time and exits 0 at once after that; its first
    run touches ``<name>.ran`` (:func:`wait_ran`)."""
    marker = tmp / f"{name}.ran"
    return ["sh", "-c", f"test -e {marker} || {{ touch {marker}; sleep 30; }}"]


def long_run(tmp: Path, name: str) -> list[str]:
    """A command that touches ``<name>.ran`` and runs 30 s."""
    return ["sh", "-c", f"touch {tmp / f'{name}.ran'}; exec sleep 30"]


def wait_ran(tmp: Path, *names: str) -> None:
    """Wait until the commands have run (touched ``<name>.ran``), not only started in the
    store: a node killed in between would leave nothing to recover or end."""
    wait_for(lambda: all((tmp / f"{n}.ran").exists() for n in names), what=f"{names} running")


def start_workers(c: Cluster, recovery_workers: int = 1) -> None:
    c.start("worker", "liveness")
    for _ in range(recovery_workers):
        c.start("worker", "recovery")


def node(
    c: Cluster, name: str, member_uuid: str | None = None, *, passive: bool = False
) -> tuple[str, subprocess.Popen[bytes]]:
    member_uuid = member_uuid or new_uuid()
    args = ["node", "--uuid", member_uuid, "--name", name] + (["--passive"] if passive else [])
    return member_uuid, c.start(*args)


def wait_state(c: Cluster, uuids: list[str], state: str) -> None:
    r = c.client()
    wait_for(
        lambda: all(
            (s := read_snapshot(r, KEYS).states.get(u)) is not None and s.value == state
            for u in uuids
        ),
        timeout_s=20,
        what=f"{uuids} {state}",
    )


def wait_running(db: Db, execution_ids: list[str]) -> None:
    wait_for(
        lambda: all(db.execution(e).status == "running" for e in execution_ids),
        timeout_s=20,
        what="executions running on the victim",
    )


@pytest.mark.both_stacks
def test_sigkill_retries_a_running_job_on_another_member_after_both_delays(
    rc: Cluster, tmp_path: Path
) -> None:
    db = Db(rc)
    start_workers(rc)
    _, dead_proc = node(rc, "dead-first", DEAD_FIRST)
    node(rc, "passive", PASSIVE, passive=True)
    live, _ = node(rc, "live")
    victim, victim_proc = node(rc, "victim")
    plain_victim, plain_proc = node(rc, "plain-victim")
    wait_state(rc, [DEAD_FIRST, PASSIVE, live, victim, plain_victim], "active")
    dead_proc.kill()
    wait_state(rc, [DEAD_FIRST], "dead")
    with_retry = db.job("with-retry", once_then_quick(tmp_path, "a"), owner=live, retry_count=2)
    without = db.job("without", long_run(tmp_path, "plain"), owner=live)
    first, plain = db.run_on(with_retry, victim), db.run_on(without, plain_victim)
    wait_running(db, [first, plain])
    wait_ran(tmp_path, "a", "plain")
    # The mass-failure guard counts as failing with a victim every member that went silent
    # within one considerDead window of the victim's last heartbeat: dead-first must have been
    # silent longer than that, so the victims are killed once heard after it was declared dead.
    (gone,) = [
        c for c in membership_changes(rc.client(), KEYS, DEAD_FIRST) if c.to_state.value == "dead"
    ]
    r = rc.client()
    wait_for(
        lambda: all(
            (r.zscore(KEYS.view_seen, u) or 0) > gone.at_ms for u in (victim, plain_victim)
        ),
        what="both victims heard after dead-first was declared dead",
    )
    victim_proc.kill()
    plain_proc.kill()

    (row,) = wait_for(
        lambda: [r for r in db.recoveries("committed") if r.dead_uuid == victim],
        timeout_s=15,
        what="recovery committed",
    )
    (retry,) = wait_for(
        lambda: [e for e in db.retries(first) if e.status == "succeeded"],
        timeout_s=15,
        what="attempt 2 finished",
    )
    assert db.execution(first).status == "incomplete"
    assert (retry.member_uuid, retry.attempt, retry.trigger) == (live, 2, "retry")
    (dead,) = [
        c for c in membership_changes(rc.client(), KEYS, victim) if c.to_state.value == "dead"
    ]
    assert row.due_ms == dead.at_ms + DELAY_MS and row.decided_ms is not None
    assert row.decided_ms >= row.due_ms  # recoverExecutions.delay
    assert retry.fire_ms == row.decided_ms + RETRY_DELAY_S * 1000
    assert retry.started_ms is not None and retry.started_ms >= retry.fire_ms  # retry delay
    wait_for(lambda: db.execution(plain).status == "incomplete", what="plain marked")
    assert db.retries(plain) == []  # no retry settings: only marked incomplete
    listed = json.loads(rc.run("recoveries", "--json").stdout)
    (mine,) = [x for x in listed if x["dead_uuid"] == victim]
    assert (mine["outcome"], mine["executions_marked"], mine["retried"]) == ("committed", 1, 1)
    assert mine["retries"][0]["retry_execution"] == retry.id
    assert mine["retries"][0]["to"] == live
    (other,) = [x for x in listed if x["dead_uuid"] == plain_victim]
    assert (other["outcome"], other["executions_marked"], other["retried"]) == ("committed", 1, 0)


@pytest.mark.both_stacks
def test_a_redelivered_proposal_creates_no_second_retry(rc: Cluster, tmp_path: Path) -> None:
    rc.extra_env["QWC_CLUSTERMODE_RECOVEREXECUTIONS_DELAY"] = "1.5"
    db = Db(rc)
    start_workers(rc, recovery_workers=2)
    live, _ = node(rc, "live")
    victim, victim_proc = node(rc, "victim")
    wait_state(rc, [live, victim], "active")
    first = db.run_on(
        db.job("j", once_then_quick(tmp_path, "r"), owner=live, retry_count=3), victim
    )
    wait_running(db, [first])
    wait_ran(tmp_path, "r")
    r = rc.client()
    victim_proc.kill()
    # the replica holding the proposal dies inside the delay: the other one reclaims it
    pending = wait_for(
        lambda: r.xpending_range(KEYS.recovery, GROUP_RECOVERY, "-", "+", 10), what="held"
    )
    holder_pid = int(pending[0]["consumer"].decode().rsplit("-", 1)[1])
    os.kill(holder_pid, signal.SIGKILL)
    wait_for(lambda: db.recoveries("committed"), timeout_s=20, what="committed by the other")
    # then the same proposal is delivered again (as after a crash between commit and ack)
    r.xgroup_setid(KEYS.recovery, GROUP_RECOVERY, "0")
    wait_for(lambda: _delivered_and_acked(r), timeout_s=10, what="redelivery handled")
    wait_for(
        lambda: any(e.status == "succeeded" for e in db.retries(first)), timeout_s=15, what="ran"
    )
    assert len(db.retries(first)) == 1
    assert [x.outcome for x in db.recoveries()] == ["committed"]


def _delivered_and_acked(r: Any) -> bool:
    (group,) = r.xinfo_groups(KEYS.recovery)
    return bool(group["last-delivered-id"] != b"0-0" and group["pending"] == 0)


@pytest.mark.both_stacks
def test_a_paused_member_s_recovered_command_is_killed_while_it_is_still_paused(
    rc: Cluster, tmp_path: Path
) -> None:
    """The node is SIGSTOPped (not killed) while it runs a job with a retry: it turns dead,
    the recovery marks the execution incomplete and retries it on the live member. The
    paused node's command still runs; at its next store check the node's watchdog (a
    process of its own, not paused) sees the execution is no longer running there and ends
    its process group, so the work never runs twice for long, and nothing is written over
    the recovery's outcome."""
    db = Db(rc)
    start_workers(rc)
    live, _ = node(rc, "live")
    victim, victim_proc = node(rc, "victim")
    wait_state(rc, [live, victim], "active")
    marker, pid_file = tmp_path / "long.ran", tmp_path / "long.pid"
    command = [
        "sh",
        "-c",
        f"test -e {marker} || {{ touch {marker}; echo $$ > {pid_file}; exec sleep 30; }}",
    ]
    first = db.run_on(db.job("long", command, owner=live, retry_count=1), victim)
    wait_running(db, [first])
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid"))
    os.kill(victim_proc.pid, signal.SIGSTOP)
    try:
        wait_state(rc, [victim], "dead")
        (retry,) = wait_for(lambda: db.retries(first), timeout_s=20, what="the retry")
        assert retry.member_uuid == live
        wait_for(lambda: db.execution(retry.id).status == "succeeded", what="retry succeeded")
        wait_for(lambda: pid_gone(pid), timeout_s=10, what="the paused member's command killed")
        assert victim_proc.poll() is None  # the node is still there, paused
    finally:
        os.kill(victim_proc.pid, signal.SIGCONT)
    assert db.execution(first).status == "incomplete"
