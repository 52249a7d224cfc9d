"""Notifications end to end: real nodes, liveness, takeover, recovery and notify workers,
a real HTTP receiver (a thread of this test), real Redis and SQL.

A member is SIGKILLed: its receiver, down while it happens, gets ``member.inactive``,
``member.dead`` and ``takeover.committed`` once each, in that order, signed, once it is
back. A receiver that never answers delays no takeover, recovery or fire (the same run
without any receiver is the control, held to the same bounds), its events end in ``qwc
notifications failed``, and its notify worker still stops within 10 s of SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from schemas.keys import Keys
from tests.cluster import Cluster, wait_for
from tests.notify_receiver import Received, Receiver, SilentReceiver
from tests.test_recovery_live import RECOVERY_ENV
from tests.test_takeover_live import (
    TAKEOVER_ENV,
    add_jobs,
    open_test_store,
    owners,
    start,
    takeovers,
)
from workers.notify.failed import list_failed
from workers.notify.receiver import read_failures
from workers.store import insert_execution, list_recoveries, start_execution
from workers.store.report import count_missed_fires, fire_times_by_job

pytestmark = pytest.mark.processes

KEYS = Keys()
SECRET = "live-test-secret-0123456789"
LATE_BOUND_MS = 1500  # a takeover or recovery commits within this after it is due


def notify_env(url: str, *, timeout_s: float, horizon_s: float) -> dict[str, str]:
    return {
        "QWC_NOTIFICATIONS_WEBHOOKS_OPS_URL": url,
        "QWC_NOTIFICATIONS_WEBHOOKS_OPS_EVENTS": "member.*,takeover.*,recovery.*",
        "QWC_NOTIFICATIONS_SECRET": SECRET,
        "QWC_NOTIFICATIONS_TIMEOUT": str(timeout_s),
        "QWC_NOTIFICATIONS_RETRY_INITIAL": "0.1",
        "QWC_NOTIFICATIONS_RETRY_MAX": "0.5",
        "QWC_NOTIFICATIONS_RETRY_HORIZON": str(horizon_s),
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def test_a_killed_member_is_told_in_order_signed_and_once_though_the_receiver_was_down(
    cluster: Cluster, receiver: Receiver
) -> None:
    cluster.extra_env.update(TAKEOVER_ENV)
    cluster.extra_env.update(notify_env(receiver.url, timeout_s=1, horizon_s=60))
    notify = cluster.start("worker", "notify", "--consumer", "notify-1")
    (victim, proc), (a, _), (b, _) = start(cluster)
    client = cluster.client()
    wait_for(lambda: client.exists(KEYS.notify_lease("ops")), what="the notify worker delivering")
    jobs = add_jobs(cluster, victim, 6)

    receiver.stop()  # the receiver is down while the member dies and its jobs move
    down = time.monotonic()
    proc.kill()
    wait_for(lambda: set(owners(cluster).values()) == {a, b}, timeout_s=15, what="takeover")
    wait_for(lambda: read_failures(client, KEYS, "ops"), what="a failed attempt")
    receiver.start()  # the same port
    up = time.monotonic()

    kinds = ["member.inactive", "member.dead", "takeover.committed"]
    wait_for(lambda: {e["type"] for e in receiver.events()} == set(kinds), timeout_s=15,
             what="3 events")  # fmt: skip
    assert up - down > 1.0  # the receiver was down for the whole of it
    got = receiver.requests
    first: dict[str, Received] = {}
    for g in got:  # a repeated id is a redelivery: the same bytes, a later attempt
        seen = first.setdefault(g.event["id"], g)
        assert seen is g or (g.body == seen.body and g.attempt > seen.attempt), (seen, g)
    assert [g.event["type"] for g in first.values()] == kinds  # each once, in that order
    assert len(got) == 3  # here nothing was redelivered: the receiver was down, not slow
    assert all(g.signed_by(SECRET) for g in got)
    assert got[0].attempt > 1  # sent again after the receiver came back
    assert [g.event["data"]["member"]["uuid"] for g in got] == [victim] * 3
    inactive, dead, committed = (g.event for g in first.values())
    assert (inactive["data"]["from_state"], inactive["data"]["to_state"]) == ("active", "inactive")
    assert (dead["data"]["from_state"], dead["data"]["to_state"]) == ("inactive", "dead")
    (row,) = [t for t in takeovers(cluster) if t.outcome == "committed"]
    assert committed["id"] == f"takeover.committed:{row.proposal_id}"
    assert committed["data"]["jobs_moved"] == len(jobs) == 6
    assert {d["uuid"]: d["jobs"] for d in committed["data"]["destinations"]} == row.destinations
    assert sorted(d["name"] for d in committed["data"]["destinations"]) == ["node-2", "node-3"]
    assert inactive["time_ms"] < dead["time_ms"] < committed["time_ms"]
    # nothing else is pending for the receiver; the worker stops cleanly
    notify.send_signal(signal.SIGTERM)
    assert notify.wait(10) == 0


def _lateness(cluster: Cluster) -> tuple[int, int]:
    """(takeover, recovery) commit time minus due time, ms."""
    (t,) = [t for t in takeovers(cluster) if t.outcome == "committed"]
    store = open_test_store(cluster)
    try:
        (r,) = [r for r in list_recoveries(store) if r.outcome == "committed"]
    finally:
        store.close()
    assert t.decided_ms is not None and r.decided_ms is not None
    return t.decided_ms - t.due_ms, r.decided_ms - r.due_ms


@pytest.mark.parametrize("hooks", ["silent receiver", "no receiver"])
def test_a_receiver_that_never_answers_delays_nothing(cluster: Cluster, hooks: str) -> None:
    cluster.extra_env.update(TAKEOVER_ENV)
    cluster.extra_env.update(RECOVERY_ENV)
    silent = SilentReceiver()
    notify = None
    if hooks == "silent receiver":
        cluster.extra_env.update(notify_env(silent.url, timeout_s=0.3, horizon_s=0.5))
        notify = cluster.start("worker", "notify")
    cluster.start("worker", "recovery")
    try:
        (victim, proc), (a, _), _ = start(cluster)
        survivors_jobs = add_jobs(cluster, a, 3, "a", schedule="* * * * * *")
        add_jobs(cluster, victim, 3, "v", schedule="* * * * * *")
        long_job = add_jobs(cluster, victim, 1, "long")[0]
        store = open_test_store(cluster)
        try:
            now = time.time_ns() // 1_000_000
            running = insert_execution(
                store,
                job_id=long_job,
                member_uuid=victim,
                trigger="manual",
                fire_ms=now,
                now_ms=now,
            )
            assert start_execution(store, running, now_ms=now, member_uuid=victim)
        finally:
            store.close()
        wait_for(lambda: _fired(cluster, survivors_jobs), what="a's jobs firing")
        killed_ms = time.time_ns() // 1_000_000
        proc.kill()
        wait_for(lambda: victim not in owners(cluster).values(), timeout_s=15, what="takeover")
        wait_for(lambda: _recovered(cluster), timeout_s=15, what="recovery")
        takeover_late_ms, recovery_late_ms = _lateness(cluster)
        assert 0 <= takeover_late_ms <= LATE_BOUND_MS
        assert 0 <= recovery_late_ms <= LATE_BOUND_MS
        until_ms = time.time_ns() // 1_000_000
        store = open_test_store(cluster)
        try:
            missed = count_missed_fires(store, since_ms=killed_ms - 1000, until_ms=until_ms)
        finally:
            store.close()
        assert not {j: n for j, n in missed.missed.items() if j in survivors_jobs}  # fires on time
        if notify is not None:
            wanted = {"member.inactive", "member.dead", "takeover.committed", "recovery.committed"}
            client = cluster.client()
            wait_for(
                lambda: wanted <= {f["event_type"] for f in list_failed(client, KEYS)},
                timeout_s=20,
                what="the silent receiver's events given up",
            )
            failed = {f["event_type"]: f for f in _failed(cluster)}  # as `qwc` shows them
            assert failed["member.dead"]["receiver"] == "ops"
            assert "no answer" in failed["member.dead"]["error"]
            assert failed["member.dead"]["payload"]["data"]["member"]["uuid"] == victim
            notify.send_signal(signal.SIGTERM)
            assert notify.wait(10) == 0
    finally:
        silent.stop()


def _fired(cluster: Cluster, jobs: list[str]) -> bool:
    store = open_test_store(cluster)
    try:
        times = fire_times_by_job(store)
    finally:
        store.close()
    return all(len(times.get(j, [])) >= 1 for j in jobs)


def _recovered(cluster: Cluster) -> bool:
    store = open_test_store(cluster)
    try:
        return any(r.outcome == "committed" for r in list_recoveries(store))
    finally:
        store.close()


def _failed(cluster: Cluster) -> list[dict[str, object]]:
    return json.loads(cluster.run("notifications", "failed", "--json").stdout)  # type: ignore[no-any-return]
