"""The README's promises, run as a user would: its demo command and its command table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
QWC = str(Path(sys.executable).with_name("qwc"))


def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: no QWC_* variables, a fresh working directory and temporary
    directory (the demo's data directory is made there: another run's demo on the same
    machine is not this one's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    env["HOME"] = env["TMPDIR"] = str(tmp_path)
    return env


def test_readme_names_the_two_commands() -> None:
    assert "pip install -e .\nqwc demo" in README
    assert "pip install -e '.[dev]' && pytest" in README


@pytest.mark.processes
def test_demo_json_exits_0_on_the_embedded_defaults(tmp_path: Path) -> None:
    result = subprocess.run(
        [QWC, "demo", "--json"],
        cwd=tmp_path,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["ok"] is True, summary["verdict"]
    killed = summary["killed"]
    states = {m["uuid"]: m["state"] for m in summary["members"]}
    assert states.pop(killed) == "dead"
    assert set(states.values()) == {"active"} and len(states) == 2
    # from its first turn to active (under load, a member the store knew may be turned
    # inactive before its first heartbeat is read: the demo's verdict judges it likewise)
    turns = [c["to"] for c in summary["changes"] if c["uuid"] == killed]
    assert turns[turns.index("active") :] == ["active", "inactive", "dead"]
    # its jobs moved, once, to the live members; nothing fired twice
    assert summary["killed_jobs"] == 10  # 30 jobs round-robin over 3 members
    committed = [
        t for t in summary["takeovers"] if t["dead_uuid"] == killed and t["outcome"] == "committed"
    ]
    assert len(committed) == 1
    assert committed[0]["jobs_moved"] == summary["killed_jobs"]
    assert set(committed[0]["destinations"]) == set(states)
    assert sum(committed[0]["destinations"].values()) == summary["killed_jobs"]
    assert committed[0]["delay_s"] >= summary["timings_s"]["autotakeover.delay"]
    assert committed[0]["proposed_at"] < committed[0]["committed_at"]
    assert summary["jobs_on_dead_members"] == 0
    # the execution it was running became incomplete and was retried once on a live member
    (recovered,) = summary["recovered"]
    assert recovered["from"] == killed and recovered["to"] in states
    assert (recovered["attempt"], recovered["retry_status"]) == (2, "succeeded")
    assert summary["double_fires"] == 0
    assert summary["executions"] > summary["jobs"]
    assert isinstance(summary["missed_fires"], dict)
    assert summary["gap_fires_while_dead_total"] >= summary["killed_jobs"]  # >= 1 s dead each
    assert list(tmp_path.iterdir()) == [] or all(p.name.startswith(".") for p in tmp_path.iterdir())
    assert demo_processes(tmp_path) == [], "the demo left processes behind"


def demo_processes(tmp_path: Path) -> list[int]:
    """Live processes whose environment or command line names a demo data directory made
    in ``tmp_path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            blob = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes()
            zombie = (proc / "stat").read_text().split(") ")[1].startswith("Z")
        except OSError:
            continue
        if f"{tmp_path}/qwc-demo-".encode() in blob and not zombie:
            found.append(int(proc.name))
    return found


def test_every_command_in_the_readme_table_exists(tmp_path: Path) -> None:
    commands = set(re.findall(r"^\| `qwc ([a-z]+)", README, flags=re.MULTILINE))
    assert {"node", "worker", "members", "config", "db", "embedded", "demo"} <= commands
    result = subprocess.run(
        [QWC, "--help"], env=user_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in commands:
        assert re.search(rf"^\s+{command}\b", result.stdout, flags=re.MULTILINE), command
