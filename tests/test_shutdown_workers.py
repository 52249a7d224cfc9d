"""Graceful shutdown: every kind of ``qwc`` process exits 0 within 10 s of SIGTERM, and a
takeover worker that stops while holding a proposal hands it back to another replica,
which commits it (the node's own SIGTERM test is in tests/test_node_live.py)."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from typing import Any

import pytest
import redis

from schemas.codec import decode_as
from schemas.keys import GROUP_LIVENESS, GROUP_RECOVERY, GROUP_TAKEOVER, Keys
from schemas.messages import TakeoverProposal
from tests.cluster import Cluster, wait_for
from tests.test_takeover_live import add_jobs, open_test_store
from workers.bus.streams import server_time_ms
from workers.liveness.view import read_snapshot
from workers.store import list_jobs, list_takeovers

pytestmark = pytest.mark.processes

KEYS = Keys()
SIGTERM_LIMIT_S = 10
GROUPS = {
    "liveness": (KEYS.heartbeats, GROUP_LIVENESS),
    "takeover": (KEYS.takeover, GROUP_TAKEOVER),
    "recovery": (KEYS.recovery, GROUP_RECOVERY),
}


def consumers(client: redis.Redis, stream: str, group: str) -> dict[str, int]:
    """Consumer name -> pending entries, in ``group`` of ``stream`` (empty before it exists)."""
    try:
        rows: list[dict[str, Any]] = client.xinfo_consumers(stream, group)
    except redis.ResponseError:
        return {}
    return {r["name"].decode(): int(r["pending"]) for r in rows}


def log_of(cluster: Cluster, proc: subprocess.Popen[bytes]) -> str:
    return cluster.logs[cluster.procs.index(proc)].read_text(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(SIGTERM_LIMIT_S)


@pytest.mark.parametrize("kind", ["liveness", "takeover", "recovery"])
def test_a_worker_exits_0_within_10_s_of_sigterm(cluster: Cluster, kind: str) -> None:
    proc = cluster.start("worker", kind, "--consumer", f"{kind}-a")
    client = cluster.client()
    stream, group = GROUPS[kind]
    # in its loop: it has joined its group (a blocking read registers the consumer)
    wait_for(lambda: f"{kind}-a" in consumers(client, stream, group), what=f"{kind} reading")
    assert stop(proc) == 0
    assert f"{kind} worker {kind}-a: stopped" in log_of(cluster, proc)


def test_the_manager_exits_0_within_10_s_of_sigterm(cluster: Cluster) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = cluster.start("manager", "--port", str(port))
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/openapi.json"), what="the manager")
    assert stop(proc) == 0  # not -15: uvicorn's re-raised signal is not passed on
    assert "Application shutdown complete" in log_of(cluster, proc)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


# -- a takeover worker stopped while it holds a proposal ------------------------------------

# replicas reclaim a proposal idle for delay + 1 s; a hand-back is taken within a heartbeat
# interval (0.2 s) of the stop, by a replica already running
DELAY_S = 3


def held_proposal(client: redis.Redis, consumer: str) -> TakeoverProposal | None:
    """The takeover proposal pending for ``consumer``, if it holds one."""
    try:
        pending = client.xpending_range(KEYS.takeover, GROUP_TAKEOVER, "-", "+", 10, consumer)
    except redis.ResponseError:  # NOGROUP: the worker has not created its group yet
        return None
    if not pending:
        return None
    ((_id, fields),) = client.xrange(KEYS.takeover, pending[0]["message_id"], count=1)
    return decode_as(fields[b"m"], TakeoverProposal)


def test_a_stopped_takeover_worker_hands_its_proposal_to_another_replica(
    cluster: Cluster,
) -> None:
    cluster.extra_env.update(
        QWC_CLUSTERMODE_AUTOTAKEOVER_ENABLED="true",
        QWC_CLUSTERMODE_AUTOTAKEOVER_DELAY=str(DELAY_S),
        QWC_CLUSTERMODE_AUTOTAKEOVER_SLEEP="60",
    )
    client = cluster.client()
    cluster.start("worker", "liveness")
    replicas = {
        name: cluster.start("worker", "takeover", "--consumer", name)
        for name in ("takeover-a", "takeover-b")
    }
    victim, victim_proc = cluster.node("victim")
    survivor, _ = cluster.node("survivor")
    wait_for(
        lambda: (
            {s.value for s in read_snapshot(client, KEYS).states.values()} == {"active"}
            and len(read_snapshot(client, KEYS).states) == 2
        ),
        timeout_s=20,
        what="both members active",
    )
    wait_for(
        lambda: set(consumers(client, KEYS.takeover, GROUP_TAKEOVER)) == set(replicas),
        what="both replicas reading",
    )
    jobs = add_jobs(cluster, victim, 4)
    victim_proc.kill()
    holder, proposal = wait_for(
        lambda: next(((n, p) for n in replicas if (p := held_proposal(client, n))), None),
        timeout_s=15,
        what="held",
    )
    (other,) = set(replicas) - {holder}
    assert server_time_ms(client) < proposal.due_at_ms  # held, not due yet
    assert stop(replicas[holder]) == 0
    assert f"{holder}: handed back 1 pending entries" in log_of(cluster, replicas[holder])
    taken = wait_for(lambda: held_proposal(client, other), what="taken")
    assert taken.id == proposal.id
    # Taken before it was due: only the hand-back allows that (a reclaim needs the entry
    # idle for delay + 1 s, i.e. until after the due time).
    assert server_time_ms(client) < proposal.due_at_ms
    store = open_test_store(cluster)
    try:
        wait_for(
            lambda: {j.owner_uuid for j in list_jobs(store) if j.id in jobs} == {survivor},
            timeout_s=DELAY_S + 15,
            what="the jobs moved",
        )
        outcomes = [(t.proposal_id, t.outcome) for t in list_takeovers(store)]
    finally:
        store.close()
    assert outcomes.count((proposal.id, "committed")) == 1
    # acknowledged once its event is told, right after the commit
    wait_for(lambda: held_proposal(client, other) is None, what="acknowledged")
