"""Shared fixtures: real Redis (the embedded server, and QWC_TEST_REDIS_URL when set), real SQL
(SQLite, and QWC_TEST_DATABASE_URL when set), ``cluster`` for runs of real ``qwc``
processes, and the manager's app on those servers (``api``, ``make_api``, ``cluster_view``)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.fixtures_cluster import cluster  # noqa: F401
from tests.fixtures_redis import embedded_redis_url, r, redis_url  # noqa: F401
from tests.fixtures_sql import db_url, store  # noqa: F401
from tests.inprocess import threads  # noqa: F401
from tests.manager_fixtures import api, cluster_view, make_api  # noqa: F401


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can print logs of failed tests."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
