"""``qwc embedded status|stop`` on the data directory of the effective settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import workers.cli.main as cli_main
from schemas.errors import EmbeddedRedisError
from workers.bus.embedded import EmbeddedRedis
from workers.cli.common import CliContext
from workers.cli.embedded_cmd import COMMANDS, embedded


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # no stray ./qwcontrol-config.properties
    for var in ("QWC_CONFIG", "QWC_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QWC_HOME", str(tmp_path / "data"))
    yield tmp_path / "data"
    EmbeddedRedis(tmp_path / "data").stop()


def _qwc(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(embedded, list(args), obj=CliContext(), env=env)


def test_commands_are_registered() -> None:
    assert [c.name for c in COMMANDS] == ["embedded"]
    assert set(embedded.commands) == {"status", "stop"}


def test_help_texts() -> None:
    result = _qwc("--help")
    assert result.exit_code == 0
    assert "embedded Redis server" in result.output
    assert "qwc embedded stop" in result.output
    stop_help = _qwc("stop", "--help").output
    assert "gracefully" in stop_help
    assert "--json" in _qwc("status", "--help").output


def test_status_and_stop_when_nothing_runs(home: Path) -> None:
    result = _qwc("status")
    assert result.exit_code == 0, result.output
    assert "not running" in result.output
    assert str(home) in result.output
    result = _qwc("stop")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"no embedded Redis server was running in {home}"


def test_status_json_then_stop(home: Path) -> None:
    url = EmbeddedRedis(home).ensure()
    result = _qwc("status", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["running"] is True
    assert info["url"] == url
    assert info["home"] == str(home)
    assert info["in_use"] is True
    assert isinstance(info["pid"], int)
    assert info["version"].startswith("6.2")

    human = _qwc("status").output
    assert f"running (pid {info['pid']}" in human
    assert url in human

    result = _qwc("stop")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"stopped the embedded Redis server of {home}"
    assert EmbeddedRedis(home).url() is None
    assert json.loads(_qwc("status", "--json").output)["running"] is False


def test_status_notes_an_external_redis(home: Path) -> None:
    result = _qwc("status", "--json", env={"QWC_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["in_use"] is False
    result = _qwc("status", env={"QWC_REDIS_URL": "redis://user:secret@127.0.0.1:6379/0"})
    assert "qwcontrol.redis.url is set" in result.output
    assert "secret" not in result.output


def test_an_error_no_command_handled_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, a QwcError a command did not catch (the embedded Redis finding no socket
    path, in `qwc demo`) printed a traceback."""

    def failing(**_: object) -> None:
        raise EmbeddedRedisError("no unix socket path for the embedded Redis")

    monkeypatch.setattr(cli_main, "cli", failing)
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err == "qwc: error: no unix socket path for the embedded Redis\n"
