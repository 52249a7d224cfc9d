"""The deliveries given up, as the manager's API, its metrics and ``qwc notifications
failed|retry|test`` show them, on a real Redis with what a real notify loop wrote."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from schemas.settings_webhooks import Webhook
from tests.cluster import QWC
from tests.manager_fixtures import READ_TOKEN, Api
from tests.notify_receiver import Receiver
from tests.test_notify_worker import KEYS, SECRET, Clock, event, loop_for, settings, step_until
from workers.notify.emit import emit
from workers.notify.failed import list_failed
from workers.notify.hooks import HOOK_COUNTS


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def deliver(r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """Two events: the first refused (404: given up at once), the second delivered; a
    third emitted and left undelivered."""
    hook = Webhook(name="ops", url=receiver.url, events=("*",))
    loop = loop_for(r, settings(redis_url, tmp_path, hook), Clock(1))
    loop.step()
    receiver.statuses.append(404)
    emit(r, KEYS, event(1))
    emit(r, KEYS, event(2, "takeover.committed"))
    step_until(loop, lambda: len(receiver.requests) == 2, "two attempts")
    emit(r, KEYS, event(3))
    loop.close()


def test_the_api_and_the_metrics_show_the_deliveries(
    make_api: Callable[..., Api], r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    deliver(r, redis_url, tmp_path, receiver)
    hook = Webhook(name="ops", url=receiver.url, events=("*",))
    api = make_api(notification_webhooks=(hook,))
    (failed,) = api.ok("GET", "/api/cluster/notifications/failed", token=READ_TOKEN)
    assert failed == list_failed(r, KEYS)[0]
    assert (failed["receiver"], failed["event_id"], failed["status"]) == ("ops", event(1).id, 404)
    assert failed["payload"]["id"] == event(1).id and failed["attempts"] == 1
    assert api.ok("GET", "/api/cluster/notifications/failed?receiver=other") == []
    assert api.get("/api/cluster/notifications/failed", token=None).status_code == 401
    metrics = api.get("/metrics").text
    assert 'qwc_notifications_delivered_total{outcome="delivered",receiver="ops"} 1.0' in metrics
    assert 'qwc_notifications_delivered_total{outcome="failed",receiver="ops"} 1.0' in metrics
    assert 'qwc_notifications_delivered_total{outcome="retried",receiver="ops"} 0.0' in metrics
    assert 'qwc_notifications_pending{receiver="ops"} 1.0' in metrics  # event 3, not read yet
    assert "qwc_notifications_failed 1.0" in metrics
    assert (
        'qwc_notifications_delivered_total{outcome="delivered",receiver="job-hooks"} 0.0' in metrics
    )
    r.hincrby(KEYS.notify_counts, f"{HOOK_COUNTS}:delivered", 2)  # as the hooks' deliveries do
    metrics = api.get("/metrics").text
    assert (
        'qwc_notifications_delivered_total{outcome="delivered",receiver="job-hooks"} 2.0' in metrics
    )


def qwc(redis_url: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    base.update(QWC_REDIS_URL=redis_url, QWC_HOME=str(tmp_path / "home"), QWC_CONFIG="/dev/null")
    return subprocess.run(
        [QWC, *args], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def test_the_cli_lists_and_sends_again_what_was_given_up(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    deliver(r, redis_url, tmp_path, receiver)
    listed = qwc(redis_url, tmp_path, "notifications", "failed", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["event_id"] == event(1).id
    table = qwc(redis_url, tmp_path, "notifications", "failed")
    assert event(1).id in table.stdout and "HTTP 404" in table.stdout
    hook = {
        "QWC_NOTIFICATIONS_WEBHOOKS_OPS_URL": receiver.url,
        "QWC_NOTIFICATIONS_WEBHOOKS_OPS_EVENTS": "*",
        "QWC_NOTIFICATIONS_SECRET": SECRET,
    }
    unknown = qwc(redis_url, tmp_path, "notifications", "retry", "0-1", **hook)
    assert unknown.returncode == 2 and "no failed delivery '0-1'" in unknown.stderr
    gone = qwc(redis_url, tmp_path, "notifications", "retry", row["id"])  # ops not configured
    assert gone.returncode == 2 and "receiver 'ops' is not configured" in gone.stderr
    receiver.statuses.append(500)
    again = qwc(redis_url, tmp_path, "notifications", "retry", row["id"], **hook)
    assert again.returncode == 1 and "HTTP 500" in again.stderr
    sent = qwc(redis_url, tmp_path, "notifications", "retry", row["id"], **hook)
    assert sent.returncode == 0, sent.stderr
    assert list_failed(r, KEYS) == []
    last = receiver.requests[-1]
    assert last.body == receiver.requests[0].body and last.attempt == 2 and last.signed_by(SECRET)


def test_the_cli_tries_a_receiver(redis_url: str, tmp_path: Path, receiver: Receiver) -> None:
    sent = qwc(redis_url, tmp_path, "notifications", "test", receiver.url, "--event", "member.dead",
               QWC_NOTIFICATIONS_SECRET=SECRET)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "HTTP 200" in sent.stdout and "answered 200" in sent.stdout and "signed" in sent.stdout
    (got,) = receiver.requests
    assert got.signed_by(SECRET) and got.event["type"] == "member.dead"
    assert got.event["id"].startswith("member.dead:test-") and got.event["data"]["test"] is True
    receiver.statuses.append(503)
    refused = qwc(redis_url, tmp_path, "notifications", "test", receiver.url, "--json")
    assert refused.returncode == 1
    answer = json.loads(refused.stdout)
    assert (answer["status"], answer["signed"], answer["body"]) == (503, False, "answered 503")
    receiver.stop()
    down = qwc(redis_url, tmp_path, "notifications", "test", receiver.url)
    assert down.returncode == 1 and "no answer" in down.stdout
    bad = qwc(redis_url, tmp_path, "notifications", "test", "ftp://host/x")
    assert bad.returncode == 2 and "scheme 'ftp'" in bad.stderr
