"""``qwc config check``: effective settings with origins, and every invalid file refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from schemas.settings import Settings
from workers.cli.main import cli

DATA = Path(__file__).parent / "data" / "config"
SEED = DATA / "seed.properties"
INVALID = sorted((DATA / "invalid").glob("*.properties"))
CM = "qwcontrol.clusterMode."
QWC = Path(sys.executable).parent / "qwc"


pytestmark = pytest.mark.usefixtures("isolated_settings")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)
    # only SystemExit may end the command: anything else would be a traceback for a user
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def expectation(path: Path) -> dict[str, str]:
    """The ``# expect-key/line/text:`` header of an invalid fixture file."""
    return dict(re.findall(r"^# expect-(\w+): (.*)$", path.read_text(), re.MULTILINE))


def clean_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("QWC_")}


def line_of(output: str, key: str) -> list[str]:
    """The columns of the output line of ``key``."""
    (line,) = [line for line in output.splitlines() if line.split()[:1] == [key]]
    return line.split()


# --- valid ------------------------------------------------------------------------------


def test_seed_file_prints_every_key_with_value_and_origin() -> None:
    result = run("--config", str(SEED), "config", "check")
    assert result.exit_code == 0, result.output
    assert f"config file: {SEED}" in result.stdout
    assert line_of(result.stdout, CM + "heartbeat.interval") == [
        CM + "heartbeat.interval",
        "30",
        f"{SEED}:5",
    ]
    assert line_of(result.stdout, CM + "autotakeover.delay")[1:] == ["60", f"{SEED}:26"]
    assert line_of(result.stdout, CM + "recoverExecutions.policy")[1:] == ["any", f"{SEED}:36"]
    assert line_of(result.stdout, "qwcontrol.redis.prefix")[1:] == ["qwc", "default"]
    keys = [line for line in result.stdout.splitlines() if line.startswith("qwcontrol.")]
    assert len(keys) == len(Settings.model_fields)
    assert result.stderr == ""


def test_environment_origin_and_masked_secrets() -> None:
    env = {
        "QWC_CLUSTERMODE_HEARTBEAT_INTERVAL": "0.2",
        "QWC_MANAGER_TOKEN": "s3cret",
        "QWC_MANAGER_READTOKEN": "r3ad",
        "QWC_DATABASE_URL": "postgresql+psycopg://qwc:pa55@db.example:5432/qwc",
    }
    result = run("config", "check", env=env)
    assert result.exit_code == 0, result.output
    assert line_of(result.stdout, CM + "heartbeat.interval")[1:] == [
        "0.2",
        "environment",
        "QWC_CLUSTERMODE_HEARTBEAT_INTERVAL",
    ]
    assert line_of(result.stdout, "qwcontrol.manager.token")[1] == "***"
    assert line_of(result.stdout, "qwcontrol.manager.readToken")[1] == "***"
    assert line_of(result.stdout, "qwcontrol.dataSource.url")[1] == (
        "postgresql+psycopg://qwc:***@db.example:5432/qwc"
    )
    assert "s3cret" not in result.output and "pa55" not in result.output
    assert "r3ad" not in result.output


def test_json_output(tmp_path: Path) -> None:
    path = tmp_path / "qwcontrol-config.properties"  # found in the working directory
    path.write_text(f"# c\n{CM}heartbeat.interval=0.5\n", encoding="utf-8")
    result = run("config", "check", "--json", env={"QWC_MANAGER_TOKEN": "s3cret"})
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["config_file"] == "qwcontrol-config.properties"
    settings = document["settings"]
    assert settings[CM + "heartbeat.interval"] == {
        "value": 0.5,
        "origin": "file",
        "file": "qwcontrol-config.properties",
        "line": 2,
        "env": None,
    }
    assert settings[CM + "autotakeover.policy"]["value"] == "any"
    assert settings[CM + "autotakeover.config.allowed"]["value"] == []
    assert settings[CM + "remoteExecution.config.activeOnly"]["value"] is True
    assert settings["qwcontrol.redis.url"] == {
        "value": None,
        "origin": "default",
        "file": None,
        "line": None,
        "env": None,
    }
    assert settings["qwcontrol.manager.token"]["value"] == "***"
    assert settings["qwcontrol.manager.token"]["env"] == "QWC_MANAGER_TOKEN"


def test_no_config_file_at_all() -> None:
    result = run("config", "check", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config_file"] is None


def test_help_explains_sources_and_exit_status() -> None:
    result = run("config", "check", "--help")
    assert result.exit_code == 0
    for words in ("--json", "QWC_CONFIG", "QWC_CLUSTERMODE_HEARTBEAT_INTERVAL", "Exit status"):
        assert words in result.stdout
    assert "check" in run("config", "--help").stdout


# --- invalid ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file_exits_2_naming_key_and_line(path: Path) -> None:
    expected = expectation(path)
    result = run("--config", str(path), "config", "check")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:{expected['line']}: {expected['key']} = ")
    assert expected["text"] in first
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file_json(path: Path) -> None:
    expected = expectation(path)
    result = run("--config", str(path), "config", "check", "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["valid"] is False
    (problem,) = document["problems"]
    assert problem["key"] == expected["key"]
    assert problem["line"] == int(expected["line"])
    assert problem["file"] == problem["source"] == str(path)
    assert expected["text"] in problem["allowed"]
    assert isinstance(problem["value"], str)


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.properties"
    result = run("config", "check", env={"QWC_CONFIG": str(missing)})
    assert result.exit_code == 2
    assert f"config file = '{missing}'" in result.stderr
    assert "No such file" in result.stderr


def test_invalid_environment_variable_is_reported() -> None:
    env = {"QWC_CLUSTERMODE_AUTOTAKEOVER_POLCY": "static"}
    result = run("config", "check", "--json", env=env)
    assert result.exit_code == 2
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["key"] == "QWC_CLUSTERMODE_AUTOTAKEOVER_POLCY"
    assert problem["file"] is None
    assert problem["source"] == "environment (QWC_CLUSTERMODE_AUTOTAKEOVER_POLCY)"
    assert "did you mean `QWC_CLUSTERMODE_AUTOTAKEOVER_POLICY`?" in problem["allowed"]


def test_all_problems_are_printed(tmp_path: Path) -> None:
    path = tmp_path / "two.properties"
    path.write_text(f"{CM}heartbeat.intervall=1\n{CM}autotakeover.policy=some\n", "utf-8")
    result = run("--config", str(path), "config", "check")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}:1: {CM}heartbeat.intervall = '1': unknown key under qwcontrol.clusterMode.: "
        f"did you mean `{CM}heartbeat.interval`?",
        f"{path}:2: {CM}autotakeover.policy = 'some': one of: any, static, remoteexecution "
        "(any case)",
        "qwc: invalid configuration: 2 problems",
    ]


# --- the real console script ------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize(
    "name", ["typo_key", "interval_not_below_inactive", "static_without_allowed"]
)
def test_real_qwc_process_refuses_invalid_file(tmp_path: Path, name: str) -> None:
    path = DATA / "invalid" / f"{name}.properties"
    expected = expectation(path)
    done = subprocess.run(
        [str(QWC), "--config", str(path), "config", "check"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"{path}:{expected['line']}: {expected['key']}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.processes
def test_real_qwc_process_missing_file_and_valid_seed(tmp_path: Path) -> None:
    missing = subprocess.run(
        [str(QWC), "config", "check"],
        capture_output=True,
        text=True,
        env={**clean_env(), "QWC_CONFIG": str(tmp_path / "absent.properties")},
        cwd=tmp_path,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "absent.properties" in missing.stderr
    assert "Traceback" not in missing.stderr
    valid = subprocess.run(
        [str(QWC), "--config", str(SEED), "config", "check", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert valid.returncode == 0, valid.stderr
    assert json.loads(valid.stdout)["settings"][CM + "heartbeat.considerDead"]["line"] == 17


def test_cluster_mode_enabled_is_a_known_key_and_false_stops_the_processes(tmp_path: Path) -> None:
    config = tmp_path / "qwcontrol-config.properties"
    config.write_text("# the product's file\nqwcontrol.clusterMode.enabled = true\n")
    assert run("--config", str(config), "config", "check").exit_code == 0
    config.write_text("# the product's file\nqwcontrol.clusterMode.enabled = false\n")
    for command in (["node", "--name", "n"], ["worker", "liveness"], ["worker", "recovery"]):
        result = run("--config", str(config), *command)
        assert result.exit_code == 2, result.output
        assert f"qwcontrol.clusterMode.enabled is false ({config}:2)" in result.output
