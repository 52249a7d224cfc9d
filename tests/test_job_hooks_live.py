"""A job's own webhooks end to end: a real member (``qwc node``), liveness and notify
workers, a real HTTP receiver (a thread of this test), real Redis and SQL.

A job with ``onfailure`` and ``ontimeout`` hooks (set by ``qwc jobs add``) is run twice:
its failing run and a timed-out run (after ``qwc jobs edit`` gave it a timeout) each
notify once (by event id), signed, with the execution's id, status, exit code and the
tail of its output; a configured receiver subscribed to ``execution.*`` gets the same
events, and nothing is sent for the start and the success the job has no hook for.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from schemas.errors import NotFoundError
from tests.cluster import Cluster, wait_for
from tests.notify_receiver import Receiver
from tests.test_commands_live import INTERVAL_ENV, run_json, wait_active
from tests.test_notify_live import SECRET
from workers.store import Store, create_store_engine, get_execution

pytestmark = pytest.mark.processes


@pytest.fixture
def db(cluster: Cluster) -> Iterator[Store]:
    """The cluster's database."""
    engine = create_store_engine(cluster.database_url)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


@pytest.fixture
def hook() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def _run_to_end(cluster: Cluster, db: Store, job: str, member: str) -> str:
    execution_id = str(run_json(cluster, "run", job, "--on", member)["execution_id"])

    def ended() -> bool:
        try:
            return get_execution(db, execution_id).ended_ms is not None
        except NotFoundError:  # the member has not processed the command yet
            return False

    wait_for(ended, timeout_s=20, what=f"execution {execution_id} ended")
    return execution_id


def test_a_failing_and_a_timed_out_run_each_notify_their_hook_once(
    cluster: Cluster, db: Store, hook: Receiver
) -> None:
    ops = Receiver().start()  # a configured receiver of execution.* gets them too
    cluster.extra_env.update(
        {
            "QWC_NOTIFICATIONS_SECRET": SECRET,
            "QWC_NOTIFICATIONS_TIMEOUT": "1",
            "QWC_NOTIFICATIONS_WEBHOOKS_OPS_URL": ops.url,
            "QWC_NOTIFICATIONS_WEBHOOKS_OPS_EVENTS": "execution.*",
            INTERVAL_ENV: "0.2",  # `qwc run` commands processed at once
        }
    )
    notify = cluster.start("worker", "notify")
    cluster.start("worker", "liveness")
    member, _ = cluster.node("runner")
    wait_active(cluster, member)
    script = 'echo starting; echo boom-$((6 * 7)); if [ -n "$SLOW" ]; then sleep 30; fi; exit 3'
    added = run_json(
        cluster, "jobs", "add", "flaky", "--project", "ops", "--shell", script,
        "--on-failure", hook.url, "--on-timeout", hook.url, "--as", member,
    )  # fmt: skip
    assert set(added["notify"]) == {"onfailure", "ontimeout"}  # type: ignore[arg-type]

    failed_id = _run_to_end(cluster, db, "ops/flaky", member)
    cluster.run("jobs", "edit", "ops/flaky", "--timeout", "1", "--shell", "SLOW=1; " + script)
    timed_out_id = _run_to_end(cluster, db, "ops/flaky", member)

    wait_for(lambda: len({e["id"] for e in hook.events()}) == 2, timeout_s=15, what="2 hooks")
    wait_for(lambda: len(ops.events()) >= 4, timeout_s=15, what="the receiver's 4 events")
    ops.stop()
    by_id = {g.event["id"]: g for g in hook.requests}
    assert len(hook.requests) == len(by_id) == 2  # each once
    assert all(g.signed_by(SECRET) and g.attempt == 1 for g in hook.requests)
    failed = by_id[f"execution.failed:{failed_id}"].event
    timed_out = by_id[f"execution.timed_out:{timed_out_id}"].event
    assert failed["type"] == "execution.failed" and timed_out["type"] == "execution.timed_out"
    f, t = failed["data"]["execution"], timed_out["data"]["execution"]
    assert (f["id"], f["status"], f["exit_code"]) == (failed_id, "failed", 3)
    assert (t["id"], t["status"]) == (timed_out_id, "timedout")
    assert t["exit_code"] is not None and t["exit_code"] < 0  # ended by a signal
    assert "boom-42" in f["output_tail"] and "boom-42" in t["output_tail"]
    assert f["lateness_ms"] >= 0 and f["started_ms"] <= f["ended_ms"]
    assert failed["data"]["job"]["path"] == "ops/flaky"
    assert failed["data"]["member"] == {"uuid": member, "name": "runner"}
    # the receiver subscribed to execution.* gets started and ended events of both runs
    kinds = sorted(e["type"] for e in ops.events())
    assert kinds == sorted(["execution.started"] * 2 + ["execution.failed", "execution.timed_out"])
    notify.send_signal(signal.SIGTERM)
    assert notify.wait(10) == 0
