"""``qwc db upgrade`` / ``qwc db current`` on real databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from workers.cli.main import cli
from workers.store import create_store_engine, current_revision, head_revision, masked_url


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no ./qwcontrol-config.properties
    for name in ("QWC_CONFIG", "QWC_DATABASE_URL", "QWC_DATASOURCE_URL", "QWC_HOME"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_upgrade_migrates_and_reports_the_revision(runner: CliRunner, db_url: str) -> None:
    env = {"QWC_DATABASE_URL": db_url}
    before = runner.invoke(cli, ["db", "current"], env=env)
    assert before.exit_code == 3, before.output
    result = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"database {masked_url(db_url)} at revision {head_revision()}\n"
    again = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert (again.exit_code, again.stdout) == (0, result.stdout)
    current = runner.invoke(cli, ["db", "current"], env=env)
    assert current.exit_code == 0, current.output
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_of_the_embedded_database(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["db", "upgrade"], env={"QWC_HOME": str(tmp_path / "home")})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "qwc.db").is_file()
    assert result.stdout.startswith("database sqlite:///")
    assert result.stdout.endswith(f"qwc.db at revision {head_revision()}\n")


def test_unreachable_database_exits_1_without_traceback(runner: CliRunner) -> None:
    url = "postgresql+psycopg://qwc:s3cret@127.0.0.1:1/qwc"
    result = runner.invoke(cli, ["db", "upgrade"], env={"QWC_DATABASE_URL": url})
    assert result.exit_code == 1
    assert "cannot migrate database at postgresql+psycopg://qwc:***@127.0.0.1:1/qwc" in (
        result.stderr
    )
    assert "Traceback" not in result.output and "s3cret" not in result.output


def test_invalid_url_exits_1(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["db", "upgrade"], env={"QWC_DATABASE_URL": "nosuchdb://x/y"})
    assert result.exit_code == 1
    assert "invalid database URL" in result.stderr


def test_help_describes_the_commands(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["db", "--help"])
    assert result.exit_code == 0
    assert "upgrade" in result.stdout and "QWC_DATABASE_URL" in result.stdout
    upgrade_help = runner.invoke(cli, ["db", "upgrade", "--help"])
    assert upgrade_help.exit_code == 0
    assert "newest schema" in upgrade_help.stdout
