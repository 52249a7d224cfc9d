"""The ``cluster`` fixture: real processes on one Redis + database pair, flushed per test.

Stacks (tests/backends.py): embedded Redis + SQLite for every test; a test marked
``@pytest.mark.both_stacks`` runs also on the stack of QWC_TEST_REDIS_URL /
QWC_TEST_DATABASE_URL when they are set. A service that was asked for and does not answer
fails the test. Teardown SIGKILLs every process the test started (tests/cluster.py
``Cluster.stop_all``): a test about stopping stops its processes itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.backends import (
    external_database_url,
    external_redis_url,
)
from tests.cluster import Cluster
from tests.fixtures_redis import require_ping
from tests.fixtures_sql import reset_postgres_schema
from workers.store import create_store_engine, upgrade


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A ``Cluster`` on the stack ``request.param`` (``"<redis>+<sql>"``)."""
    redis_kind, db_kind = request.param.split("+")
    if redis_kind == "external":
        redis_url = external_redis_url()
    else:
        redis_url = request.getfixturevalue("embedded_redis_url")
    require_ping(redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    if db_kind == "postgresql":
        db_url = external_database_url()
        reset_postgres_schema(db_url)
    else:
        db_url = f"sqlite:///{tmp_path / 'qwc.db'}"
    engine = create_store_engine(db_url)
    upgrade(engine)
    engine.dispose()
    c = Cluster(redis_url=redis_url, database_url=db_url, home=tmp_path / "home")
    try:
        yield c
    finally:
        c.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(c.dump_logs())
