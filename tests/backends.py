"""Which servers a test runs on: the one place that parametrizes ``redis_url``, ``db_url``
and ``cluster`` (called from ``pytest_generate_tests`` in tests/conftest.py).

- Redis: ``embedded`` (the private 6.2 server of the session), and ``external`` when
  QWC_TEST_REDIS_URL is set (CI: the machine's Redis 7).
- SQL: ``sqlite`` (a file in the test's tmp dir), and ``postgresql`` when
  QWC_TEST_DATABASE_URL is set.
- A test that uses only one of them (``r``/``redis_url``, or ``store``/``db_url``) runs once
  per variant of that one. A test that uses both runs on PAIRS, not on the 2x2 product:
  ``embedded-sqlite``, and ``external-postgresql`` when both URLs are set (with only one
  set, the pair has that one and the other's default). So every backend still runs every
  such test, and no test runs on a mixed pair (embedded Redis beside PostgreSQL) that no
  deployment has.
- ``cluster`` (real ``qwc`` processes) runs on the stack ``embedded+sqlite``; a test
  marked ``@pytest.mark.both_stacks`` also runs on the second stack made of the URLs that
  are set (``external+postgresql`` in CI). Mark the tests where the servers are what the
  test is about: fencing, a database outage, SIGKILL/SIGSTOP of members and replicas,
  failover, anything specific to PostgreSQL or to a real Redis 7 server.

A backend that was asked for and does not answer fails the test; it is never skipped.

Under pytest-xdist (``-n N``) each worker gets its own servers' namespace, so workers never
flush or drop each other's data: worker ``gwK`` uses Redis database ``db + K`` of
QWC_TEST_REDIS_URL and the PostgreSQL database ``<name>_gwK`` beside QWC_TEST_DATABASE_URL's
(created when missing; ``gw0`` uses the URLs as given): :func:`external_redis_url`,
:func:`external_database_url`.
"""

from __future__ import annotations

import functools
import os
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = [
    "BOTH_STACKS",
    "DATABASE_URL_ENV",
    "EXTERNAL_REDIS_ENV",
    "external_database_url",
    "external_redis_url",
    "pairs",
    "parametrize_backends",
    "redis_variants",
    "sql_backends",
    "stacks",
]

EXTERNAL_REDIS_ENV = "QWC_TEST_REDIS_URL"
DATABASE_URL_ENV = "QWC_TEST_DATABASE_URL"
BOTH_STACKS = "both_stacks"


def _worker_index() -> int:
    """K of the pytest-xdist worker ``gwK`` this process is, 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def external_redis_url() -> str:
    """QWC_TEST_REDIS_URL for this process: database ``db + K`` for xdist worker ``gwK``.
    Raises ``KeyError`` when the variable is not set, ``ValueError`` past database 15."""
    given = os.environ[EXTERNAL_REDIS_ENV]
    index = _worker_index()
    if index == 0:
        return given
    parts = urlsplit(given)
    db = int(parts.path.strip("/") or 0) + index
    if db > 15:
        raise ValueError(f"{EXTERNAL_REDIS_ENV}: no Redis database {db} for worker gw{index}")
    return urlunsplit(parts._replace(path=f"/{db}"))


def external_database_url() -> str:
    """QWC_TEST_DATABASE_URL for this process: for xdist worker ``gwK`` (K > 0) the database
    ``<name>_gwK`` on the same server, created when missing (through the server's
    ``postgres`` database: worker gw0's tests use ``<name>`` itself, and one of them
    refuses its connections for a while). Raises ``KeyError`` when the variable is not
    set."""
    given = os.environ[DATABASE_URL_ENV]
    index = _worker_index()
    if index == 0:
        return given
    return _worker_database(given, index)


@functools.cache
def _worker_database(given: str, index: int) -> str:
    url = make_url(given)
    name = f"{url.database}_gw{index}"
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def redis_variants() -> list[str]:
    """``["embedded"]``, plus ``"external"`` when QWC_TEST_REDIS_URL is set."""
    return ["embedded", "external"] if os.environ.get(EXTERNAL_REDIS_ENV) else ["embedded"]


def sql_backends() -> list[str]:
    """``["sqlite"]``, plus ``"postgresql"`` when QWC_TEST_DATABASE_URL is set."""
    return ["sqlite", "postgresql"] if os.environ.get(DATABASE_URL_ENV) else ["sqlite"]


def pairs() -> list[tuple[str, str]]:
    """(redis, sql) pairs: the defaults, and the servers that are set (with the other's
    default when only one is set)."""
    out = [("embedded", "sqlite")]
    redis_kind, sql_kind = redis_variants()[-1], sql_backends()[-1]
    if (redis_kind, sql_kind) != out[0]:
        out.append((redis_kind, sql_kind))
    return out


def stacks() -> list[str]:
    """The ``cluster`` stacks, ``"<redis>+<sql>"``: the pairs."""
    return [f"{redis_kind}+{sql_kind}" for redis_kind, sql_kind in pairs()]


def parametrize_backends(metafunc: pytest.Metafunc) -> None:
    """Parametrize the backend fixtures ``metafunc``'s test uses (see the module docstring);
    a fixture the test parametrizes itself (``@pytest.mark.parametrize(..., indirect=True)``)
    is left alone."""
    names = set(metafunc.fixturenames) - _parametrized_by_marks(metafunc)
    if "cluster" in names:
        both = metafunc.definition.get_closest_marker(BOTH_STACKS) is not None
        chosen = stacks() if both else stacks()[:1]
        metafunc.parametrize("cluster", chosen, indirect=True, ids=chosen)
    uses_redis, uses_sql = "redis_url" in names, "db_url" in names
    if uses_redis and uses_sql:
        ids = [f"{a}-{b}" for a, b in pairs()]
        metafunc.parametrize(("redis_url", "db_url"), pairs(), indirect=True, ids=ids)
    elif uses_redis:
        metafunc.parametrize("redis_url", redis_variants(), indirect=True, scope="session")
    elif uses_sql:
        metafunc.parametrize("db_url", sql_backends(), indirect=True)


def _parametrized_by_marks(metafunc: pytest.Metafunc) -> set[str]:
    names: set[str] = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(argnames, str):
            argnames = [n.strip() for n in argnames.split(",")]
        names.update(argnames)
    return names
