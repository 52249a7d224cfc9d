"""``qwc manager`` as a real process on a free port: it serves /metrics and the API on the
cluster's Redis and store, refuses a call without the token, shuts down cleanly on
SIGTERM, and refuses a large body unread (its memory does not grow by the body's size)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cluster import QWC, Cluster, new_uuid, wait_for
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


MIB = 1024 * 1024
HUGE = 100 * MIB  # what grew the manager's memory by 160 MB before a token was asked for


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory process ``pid`` has had (``VmHWM`` of /proc/PID/status):
    a body read whole shows there even after it is freed."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def offer_body(port: int, headers: bytes, chunked: bool) -> tuple[bytes, int]:
    """POST with ``headers``; when ``chunked``, send up to HUGE bytes of body, 64 KiB
    chunks, until the manager stops taking them. Its answer, and the body bytes sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /api/cluster/takeovers HTTP/1.1\r\nHost: m\r\n" + headers + b"\r\n")
        chunk, sent = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024), 0
        try:
            while chunked and sent < HUGE:
                sock.sendall(chunk)
                sent += 64 * 1024
            sock.sendall(b"0\r\n\r\n" if chunked else b"")  # the end of the body
        except OSError:
            pass  # closed by the manager after its answer
        return read_answer(sock), sent


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer: its head, and as many bytes of body as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += receive(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    while length is not None and len(body) < int(length[1]):
        body += receive(sock)
    return head + b"\r\n\r\n" + body


def receive(sock: socket.socket) -> bytes:
    piece = sock.recv(65536)
    assert piece, "the manager closed the connection without answering"
    return piece


@pytest.mark.processes
def test_a_large_unauthenticated_body_is_refused_without_growing_memory(tmp_path: Path) -> None:
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    env |= {"QWC_HOME": str(tmp_path / "home"), "QWC_MANAGER_TOKEN": TOKEN}
    with (tmp_path / "manager.log").open("wb") as log:
        proc = subprocess.Popen([QWC, "manager", "--port", str(port)], env=env, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/openapi.json"), what="the manager to answer")
        assert httpx.post(f"{base}/api/cluster/takeovers", json={}).status_code == 401
        before = peak_rss_bytes(proc.pid)
        streamed, sent = offer_body(port, b"Transfer-Encoding: chunked\r\n", chunked=True)
        grown = peak_rss_bytes(proc.pid) - before
        assert grown < 32 * MIB, f"the manager's peak memory grew by {grown / MIB:.0f} MiB"
        assert streamed.startswith(b"HTTP/1.1 413 "), streamed[:200]
        assert b'"errorCode":"api.error.request.toolarge"' in streamed
        assert sent < HUGE  # the manager stopped reading
        declared, _ = offer_body(port, b"Content-Length: %d\r\n" % HUGE, chunked=False)
        assert declared.startswith(b"HTTP/1.1 413 "), declared[:200]  # with no byte sent
    finally:
        proc.kill()
        proc.wait(10)
    assert b"Traceback" not in (tmp_path / "manager.log").read_bytes()
