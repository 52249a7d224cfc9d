"""``qwc replay`` and ``qwc record`` as a user runs them: byte-identical output for the same
file and settings (in separate processes, whatever the hash seed), what-ifs with --set,
--diff's exit status, and errors that name what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from workers.cli.main import cli
from workers.cli.replay_cmd import parse_time_ms

DATA = Path(__file__).parent / "data" / "replay"
QWC = str(Path(sys.executable).with_name("qwc"))
CM = "qwcontrol.clusterMode."


def qwc(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    env["PYTHONHASHSEED"] = hash_seed
    return subprocess.run([QWC, *args], env=env, capture_output=True, timeout=60)


@pytest.mark.processes
@pytest.mark.parametrize(
    "extra", [(), ("--json", "--diff"), ("--set", f"{CM}heartbeat.considerDead=3")]
)
def test_the_same_file_and_settings_print_the_same_bytes(extra: tuple[str, ...]) -> None:
    path = str(DATA / "returns_in_sleep.qwcrec")
    first, second = (
        qwc("replay", path, *extra, hash_seed="1"),
        qwc("replay", path, *extra, hash_seed="2"),
    )
    assert first.returncode in (0, 1) and first.stderr == b""
    assert first.stdout == second.stdout and len(first.stdout) > 500


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_json_holds_the_timeline_the_summary_and_the_diff() -> None:
    result = invoke("replay", str(DATA / "killed.qwcrec"), "--json", "--diff")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert {"recording", "settings", "changed_settings", "events", "summary", "diff"} <= set(body)
    assert body["diff"]["differences"] == [] and body["changed_settings"] == {}
    assert body["summary"]["decided"] == {
        "recovery": {"committed": 1},
        "takeover": {"committed": 1},
    }
    kinds = [e["event"] for e in body["events"]]
    assert kinds.count("state") == 5 and kinds.count("proposed") == 2
    assert all(e["at"].endswith("Z") for e in body["events"])


def test_a_what_if_is_named_and_diff_exits_1_when_decisions_differ() -> None:
    path = str(DATA / "paused.qwcrec")
    same = invoke("replay", path, "--diff")
    assert same.exit_code == 0 and "no differences" in same.output
    what_if = invoke("replay", path, "--diff", "--set", f"{CM}heartbeat.considerDead=3")
    assert what_if.exit_code == 1
    assert f"what-if: {CM}heartbeat.considerDead = 3.0 (recorded 1.2)" in what_if.output
    assert "takeover committed: 6 job(s)" in what_if.output and "only recorded" in what_if.output


def test_a_bad_setting_exits_2_naming_the_key() -> None:
    result = invoke("replay", str(DATA / "paused.qwcrec"), "--set", f"{CM}heartbeat.deadline=3")
    assert result.exit_code == 2
    assert f"--set: {CM}heartbeat.deadline = '3': unknown key" in result.output


def test_times_are_epoch_ms_or_iso() -> None:
    ms = 1_700_000_000_250
    assert parse_time_ms(str(ms)) == ms
    assert parse_time_ms("2023-11-14T22:13:20.250Z") == ms
    assert parse_time_ms("2023-11-14T23:13:20.250+01:00") == ms
    assert parse_time_ms("2023-11-14T22:13:20.250") == ms  # no offset: UTC
    assert parse_time_ms(datetime(2023, 11, 14, 22, 13, 20, 250000, UTC).isoformat()) == ms
    with pytest.raises(ValueError):
        parse_time_ms("yesterday")


def test_record_refuses_a_bad_time_and_a_reversed_window(tmp_path: Path) -> None:
    bad = invoke("record", "--out", str(tmp_path / "x"), "--since", "yesterday")
    assert bad.exit_code == 2 and "neither epoch milliseconds nor an ISO 8601 time" in bad.output
    reversed_ = invoke("record", "--out", str(tmp_path / "x"), "--since", "2000", "--until", "1000")
    assert reversed_.exit_code == 2 and "--since is after --until" in reversed_.output
    assert not (tmp_path / "x").exists()
