"""Shared fixtures: real Redis (the embedded server, and QWC_TEST_REDIS_URL when set), real SQL
(SQLite, and QWC_TEST_DATABASE_URL when set), ``cluster`` for runs of real ``qwc``
processes, the manager's app on those servers (``api``, ``make_api``, ``cluster_view``),
``isolated_settings`` (no QWC_* variable, a working directory of its own), ``run`` for
in-process ``qwc`` commands on the test's database, ``qwc`` for them on the test's Redis and
database, ``threads`` for workers running in-process, ``parts`` (a member's parts
in-process, stepped by the test), ``http_server`` (a local HTTP server) and ``browser``
(headless Chromium).

Which servers a test runs on (tests/backends.py):

- ``r`` / ``redis_url`` alone: every Redis (embedded 6.2, and the external one when set);
  ``store`` / ``db_url`` alone: every database (SQLite, and PostgreSQL when set).
- both: pairs, ``embedded-sqlite`` and ``external-postgresql``, not the 2x2 product.
- ``cluster`` (real processes, marker ``processes``): ``embedded+sqlite`` only, unless the
  test is marked ``@pytest.mark.both_stacks``: then also ``external+postgresql``. Mark a
  process test ``both_stacks`` when the servers are its subject: fencing, a database
  outage, SIGKILL/SIGSTOP of members or replicas, failover, or anything specific to
  PostgreSQL or a real Redis 7 server. Test everything else in-process (``r``/``store``
  run on both backends) and keep process scenarios few and short.

A backend that was asked for (QWC_TEST_REDIS_URL / QWC_TEST_DATABASE_URL set) and does not
answer fails the test; it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.backends import parametrize_backends
from tests.fixtures_browser import browser  # noqa: F401
from tests.fixtures_cli import run  # noqa: F401
from tests.fixtures_cluster import cluster  # noqa: F401
from tests.fixtures_redis import embedded_redis_url, r, redis_url  # noqa: F401
from tests.fixtures_sql import db_url, store  # noqa: F401
from tests.http_server import http_server  # noqa: F401
from tests.inprocess import qwc, threads  # noqa: F401
from tests.manager_fixtures import api, cluster_view, make_api  # noqa: F401
from tests.node_parts import parts  # noqa: F401


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test on the servers tests/backends.py chooses for the fixtures it uses."""
    parametrize_backends(metafunc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can print logs of failed tests."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No QWC_* variable of the caller, and a working directory without a config file
    (``tmp_path``): what the settings tests load is what they wrote."""
    for name in list(os.environ):
        if name.startswith("QWC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
