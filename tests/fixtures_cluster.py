"""The ``cluster`` fixture: real processes on one Redis + database pair, flushed per test.

Stacks: embedded Redis + SQLite always; when QWC_TEST_REDIS_URL / QWC_TEST_DATABASE_URL are
set, a second stack uses them (so each backend runs at least once without a 2x2 product of
slow process tests). A service that was asked for and does not answer fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cluster import Cluster
from tests.fixtures_redis import require_ping
from tests.fixtures_sql import reset_postgres_schema
from workers.store import create_store_engine, upgrade


def _stacks() -> list[str]:
    ext_redis = bool(os.environ.get("QWC_TEST_REDIS_URL"))
    ext_db = bool(os.environ.get("QWC_TEST_DATABASE_URL"))
    stacks = ["embedded+sqlite"]
    if ext_redis or ext_db:
        stacks.append(
            f"{'external' if ext_redis else 'embedded'}+{'postgresql' if ext_db else 'sqlite'}"
        )
    return stacks


@pytest.fixture(params=_stacks())
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    redis_kind, db_kind = request.param.split("+")
    if redis_kind == "external":
        redis_url = os.environ["QWC_TEST_REDIS_URL"]
    else:
        redis_url = request.getfixturevalue("embedded_redis_url")
    require_ping(redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    if db_kind == "postgresql":
        db_url = os.environ["QWC_TEST_DATABASE_URL"]
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
