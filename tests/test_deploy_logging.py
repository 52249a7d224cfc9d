"""``QWC_LOG_FORMAT=json``: every line a process writes on stderr is one JSON object with
time, level, logger and message — for the workers, the manager (uvicorn's lines too) and
the node (its watchdog's lines too); text stays the default."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest

from tests.cluster import Cluster, new_uuid, wait_for
from workers.cli.common import JsonLogFormatter

KEYS = {"time", "level", "logger", "message"}


def test_the_formatter_writes_one_json_object_per_record() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "workers.x", logging.WARNING, "f.py", 1, "member %s: %s", ("u", "dead"), exc_info
    )
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert set(obj) == KEYS | {"exception"}
    assert (obj["level"], obj["logger"], obj["message"]) == (
        "WARNING",
        "workers.x",
        "member u: dead",
    )
    assert "ValueError: boom\nsecond line" in obj["exception"]
    assert datetime.fromisoformat(obj["time"]).utcoffset() is not None  # timezone-aware


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as JSON; fails naming the first line that is not an object with
    the four keys."""
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict) and set(obj) >= KEYS, line
        out.append(obj)
    return out


@pytest.mark.processes
def test_every_process_logs_json_lines(cluster: Cluster) -> None:
    cluster.extra_env["QWC_LOG_FORMAT"] = "json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    procs = [
        cluster.start("worker", "liveness", "--consumer", "liveness-j"),
        cluster.start("worker", "takeover", "--consumer", "takeover-j"),
        cluster.start("manager", "--port", str(port)),
    ]
    member, node = cluster.node("node-j", new_uuid())
    procs.append(node)
    wait_for(
        lambda: any(r["uuid"] == member and r["state"] == "active" for r in cluster.members_json()),
        timeout_s=20,
        what="the node active",
    )
    wait_for(lambda: "watchdog: watching" in cluster.logs[3].read_text(), what="its watchdog")
    wait_for(lambda: "Uvicorn running" in cluster.logs[2].read_text(), what="the manager")
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    assert [p.wait(10) for p in procs] == [0, 0, 0, 0]
    logs = [json_lines(log.read_text()) for log in cluster.logs]
    messages = [{o["message"] for o in lines} for lines in logs]
    assert "liveness worker liveness-j: stopped" in messages[0]
    assert "takeover worker takeover-j: stopped" in messages[1]
    assert any(m.startswith("Uvicorn running on") for m in messages[2])
    assert any(m.startswith("qwc manager: http://") for m in messages[2])  # the banner too
    assert any(m.startswith(f"member {member} (node-j) running") for m in messages[3])
    assert f"watchdog: watching the process groups of member {member}" in messages[3]
    assert {o["level"] for lines in logs for o in lines} <= {"DEBUG", "INFO", "WARNING", "ERROR"}


def test_text_is_the_default_and_a_wrong_format_is_refused(cluster: Cluster) -> None:
    text = cluster.run("-v", "db", "upgrade")
    assert not text.stderr.lstrip().startswith("{")
    assert " INFO " in text.stderr
    cluster.extra_env["QWC_LOG_FORMAT"] = "xml"
    wrong = cluster.run("members", check=False)
    assert wrong.returncode == 2
    assert "QWC_LOG_FORMAT" in wrong.stderr or "log-format" in wrong.stderr
    cluster.extra_env["QWC_LOG_FORMAT"] = "JSON"  # any case
    upper: subprocess.CompletedProcess[str] = cluster.run("-v", "db", "upgrade")
    assert json_lines(upper.stderr)
