"""``run``: invoke ``qwc`` in-process (click's CliRunner) on the test's migrated database,
with a clean environment and working directory (``isolated_settings``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from workers.cli.main import cli
from workers.store import Store


@pytest.fixture
def run(db_url: str, store: Store, isolated_settings: None, tmp_path: Path) -> Any:
    """``run(*args, **env)``: invoke ``qwc`` on the test's (migrated) database.

    ``isolated_settings`` comes after ``db_url``: it removes QWC_TEST_DATABASE_URL too."""
    base = {"QWC_DATABASE_URL": db_url, "QWC_HOME": str(tmp_path / "home")}

    def invoke(*args: str, **env: str) -> Result:
        return CliRunner().invoke(cli, list(args), env={**base, **env})

    return invoke


def json_of(result: Result) -> Any:
    """The JSON a command that must succeed printed on stdout."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
