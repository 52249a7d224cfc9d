"""CLI fixture: ``run(*args, **env)`` invokes ``qwc`` in-process (click's runner) on the
test's migrated database (``db_url``), from an empty working directory, without the caller's
QWC_* settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from workers.cli.main import cli
from workers.store import Store

__all__ = ["CLEARED", "json_of", "run"]

CLEARED = ("QWC_CONFIG", "QWC_DATABASE_URL", "QWC_DATASOURCE_URL", "QWC_HOME", "QWC_REDIS_URL")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, store: Store) -> Any:
    """``run(*args, **env)``: invoke ``qwc`` on the test's (migrated) database."""
    monkeypatch.chdir(tmp_path)  # no ./qwcontrol-config.properties
    for name in (*CLEARED, "QWC_SERVER_UUID"):
        monkeypatch.delenv(name, raising=False)
    base = {"QWC_DATABASE_URL": db_url, "QWC_HOME": str(tmp_path / "home")}

    def invoke(*args: str, **env: str) -> Result:
        return CliRunner().invoke(cli, list(args), env={**base, **env})

    return invoke


def json_of(result: Result) -> Any:
    """The JSON a command that must succeed printed on stdout."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
