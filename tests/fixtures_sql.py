"""SQL fixtures: ``db_url`` (a SQLite file, or PostgreSQL when QWC_TEST_DATABASE_URL is set;
tests/backends.py chooses which a test runs on) and ``store`` (a migrated ``Store`` on it).

For PostgreSQL the ``public`` schema of that database is dropped and re-created before each
test; a server that does not answer makes the test fail (never skip).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.backends import external_database_url
from workers.store import Store, create_store_engine, upgrade

__all__ = ["db_url", "reset_postgres_schema", "run_threads", "store"]


def reset_postgres_schema(url: str) -> None:
    """Drop and re-create the ``public`` schema (every table, and alembic_version)."""
    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database: a SQLite file in ``tmp_path``, or the (reset) PostgreSQL
    database of QWC_TEST_DATABASE_URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'qwc.db'}"
    url = external_database_url()
    reset_postgres_schema(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated ``Store`` on ``db_url``, disposed after the test."""
    engine = create_store_engine(db_url)
    try:
        upgrade(engine)
        yield Store(engine)
    finally:
        engine.dispose()


def run_threads(targets: Sequence[Callable[[], object]], engines: Sequence[Engine]) -> None:
    """Run ``targets`` in threads at once and wait for them (60 s each at most); dispose
    ``engines`` (theirs) afterwards, whatever happened."""
    threads = [threading.Thread(target=target) for target in targets]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for engine in engines:
            engine.dispose()
