"""A job's concurrency policy and timeout as the member applies them: its parts in-process
(``parts``: the loop with a moved clock, the dispatcher, the consumer, the pool running real
commands, the recorder) on real Redis and a real database.

* ``forbid``: a job still running when its next fires come has them recorded ``skipped``
  with the reason; two of its executions never run at once;
* ``replace``: the next fire aborts the running one, whose whole process group (grandchild
  included) the pool ends at once, and the new one starts;
* ``allow``: they overlap;
* ``timeout``: the group is ended at the timeout (SIGKILL after the grace for what ignores
  SIGTERM), the execution is ``timedout`` with the reason, and retried like a failure.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.cluster import alive, wait_for
from tests.node_parts import T0, Parts, job, manual
from workers.store import ExecutionRow, Store, get_execution, list_executions


def waiting_on(gate: Path, pid_dir: Path, *, ignore_term: bool = False) -> list[str]:
    """``sh`` that starts a grandchild sleeping 30 s (its pid in ``pid_dir/<execution>``)
    and then waits for ``gate`` to exist."""
    trap = "trap '' TERM; " if ignore_term else ""
    script = (
        f'{trap}sleep 30 & echo $! > {pid_dir}/"$QWC_EXECUTION_ID"; '
        f"while [ ! -e {gate} ]; do sleep 0.02; done"
    )
    return ["sh", "-c", script]


def grandchild(pid_dir: Path, execution_id: str) -> int:
    path = pid_dir / execution_id
    return int(wait_for(lambda: path.exists() and path.read_text().strip(), what="its pid"))


def fire_at(parts: Parts, now_ms: int) -> None:
    """Move the clock, fire what is due, queue it, and start what a free slot can take."""
    parts.clock.now_ms = now_ms
    parts.step()
    parts.consumer.step()


def executions(store: Store, job_id: str) -> list[ExecutionRow]:
    return sorted(list_executions(store, job_id=job_id), key=lambda e: e.fire_ms)


def test_forbid_skips_the_fires_that_find_it_running_and_never_runs_two(
    store: Store, parts: Parts, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = job(store, waiting_on(gate, tmp_path), concurrency="forbid")
    parts.step()  # the first reload schedules it: due at T0 + 750
    running_counts = []
    for second in range(3):  # 00:00:01, :02, :03 — the first run holds on until the gate
        fire_at(parts, T0 + 750 + 1000 * second)
        running_counts.append(len(list_executions(store, job_id=job_id, statuses=("running",))))
    first, *between = executions(store, job_id)
    assert first.status == "running" and running_counts == [1, 1, 1]
    assert [e.status for e in between] == ["skipped", "skipped"]
    assert {e.reason for e in between} == {
        f"concurrency forbid: execution {first.id} is still running on member {first.member_uuid}"
    }
    gate.touch()
    assert parts.pool.wait_idle(10)
    parts.flush()
    fire_at(parts, T0 + 3750)  # it has ended: the next fire runs
    statuses = [e.status for e in executions(store, job_id)]
    assert statuses == ["succeeded", "skipped", "skipped", "running"]


def test_replace_ends_the_running_ones_process_group_and_starts_the_new(
    store: Store, parts: Parts, tmp_path: Path
) -> None:
    job_id = job(store, waiting_on(tmp_path / "never", tmp_path), concurrency="replace")
    parts.step()
    fire_at(parts, T0 + 750)
    (old,) = executions(store, job_id)
    old_grandchild = grandchild(tmp_path, old.id)
    fire_at(parts, T0 + 1750)
    replaced, new = executions(store, job_id)
    assert (replaced.id, replaced.status) == (old.id, "aborted")
    assert replaced.reason == f"replaced by {new.id}"
    wait_for(lambda: not alive(old_grandchild), what="the replaced one's grandchild gone")
    assert new.status == "running" and alive(grandchild(tmp_path, new.id))
    wait_for(lambda: parts.pool.running_ids() == {new.id}, what="the replaced one's slot free")
    parts.flush()
    assert get_execution(store, old.id).status == "aborted"  # nothing written over it


def test_allow_overlaps(store: Store, parts: Parts, tmp_path: Path) -> None:
    job_id = job(store, waiting_on(tmp_path / "never", tmp_path), concurrency="allow")
    parts.step()
    fire_at(parts, T0 + 750)
    fire_at(parts, T0 + 1750)
    assert [e.status for e in executions(store, job_id)] == ["running", "running"]
    assert len(parts.pool.running_ids()) == 2


def test_a_timeout_ends_the_whole_group_as_timedout_and_it_is_retried(
    store: Store, parts: Parts, tmp_path: Path
) -> None:
    """timeout 1 on a command whose grandchild sleeps 30 s, both ignoring SIGTERM: SIGKILL
    after the grace (0.5 s here) ends them; retried like a failure."""
    argv = waiting_on(tmp_path / "never", tmp_path, ignore_term=True)
    job_id = job(store, argv, schedule=None, timeout_s=1.0, retry_count=1, retry_delay_s=0.0)
    first = manual(store, job_id)
    parts.dispatcher.step(T0)
    begun = time.monotonic()
    assert parts.consumer.step() == 1
    pid = grandchild(tmp_path, first)
    assert parts.pool.wait_idle(10)
    took_s = time.monotonic() - begun
    parts.flush()
    assert not alive(pid)
    # recorded once its group is gone (SIGKILL at 1 s + grace; its zombies reaped by init):
    # the bound leaves a grace and a second for a loaded machine
    assert 1.0 <= took_s < 1.0 + 2 * parts.pool.grace_s + 1.0
    ended = get_execution(store, first)
    assert (ended.status, ended.reason, ended.exit_code) == ("timedout", "timed out after 1 s", -9)
    (retry,) = list_executions(store, retry_of=first)
    assert (retry.status, retry.attempt, retry.trigger) == ("scheduled", 2, "retry")
