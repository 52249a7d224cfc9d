"""``qwc manager`` as a real process on a free port: it serves /metrics and the API on the
cluster's Redis and store, refuses a call without the token, and shuts down cleanly on
SIGTERM."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.cluster import Cluster, new_uuid, wait_for
from tests.test_manager_api import closed_port
from tests.test_takeover_live import add_jobs

pytestmark = pytest.mark.processes

TOKEN = "process-test-token"


def answers(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
    except httpx.TransportError:
        return None


def test_qwc_manager_serves_metrics_and_the_api(cluster: Cluster) -> None:
    owner = new_uuid()
    jobs = add_jobs(cluster, owner, 2)
    cluster.extra_env["QWC_MANAGER_TOKEN"] = TOKEN
    port = closed_port()
    proc = cluster.start("manager", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    metrics = wait_for(lambda: answers(f"{base}/metrics"), what="the manager to answer")
    assert metrics.status_code == 200
    assert 'qwc_source_up{source="redis"} 1.0' in metrics.text
    assert 'qwc_source_up{source="store"} 1.0' in metrics.text
    assert f'qwc_member_jobs{{name="",uuid="{owner}"}} 2.0' in metrics.text
    listed = answers(f"{base}/api/cluster/jobs?owner={owner}")
    assert listed is not None and listed.status_code == 200
    assert sorted(j["id"] for j in listed.json()) == sorted(jobs)
    refused = httpx.post(f"{base}/api/cluster/guard/release", timeout=2)
    assert refused.status_code == 401 and refused.json()["error"] is True
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down cleanly, then re-raises the signal (older versions exit 0)
    assert proc.wait(10) in (0, -signal.SIGTERM)
    log = cluster.logs[-1].read_text()
    assert "Application shutdown complete" in log
    assert f"qwc manager: http://127.0.0.1:{port}" in log
    assert "GET /metrics" in log  # -v: uvicorn's access lines ...
    assert TOKEN not in log  # ... never the token
