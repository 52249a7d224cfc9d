"""Real Redis for tests: the embedded server, and QWC_TEST_REDIS_URL when it is set.

``redis_url`` is one variant (tests/backends.py chooses which a test runs on):
``embedded`` (a private server in a session temp dir, started once per session) or
``external`` (QWC_TEST_REDIS_URL; a server that does not answer PING fails the test, it is
never skipped). ``r`` is a client on it, the database flushed before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.backends import EXTERNAL_REDIS_ENV, external_redis_url
from workers.bus.connect import connect
from workers.bus.embedded import EmbeddedRedis

__all__ = ["EXTERNAL_REDIS_ENV", "embedded_redis_url", "r", "redis_url", "require_ping"]


@pytest.fixture(scope="session")
def embedded_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's embedded server (one per test session)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-home"))
    try:
        yield server.ensure()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """URL of a real Redis server: the embedded one, or $QWC_TEST_REDIS_URL (the variant is
    ``request.param``, set by tests/backends.py)."""
    if request.param == "external":
        url = external_redis_url()
        require_ping(url)
        return url
    return str(request.getfixturevalue("embedded_redis_url"))


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A client on ``redis_url`` (bytes responses); its database is flushed first."""
    client = connect(redis_url, client_name="qwc-test")
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


def require_ping(url: str) -> None:
    """Fail the test (never skip) when the Redis server at ``url`` does not answer."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"{EXTERNAL_REDIS_ENV}={url} does not answer PING: {exc}")
    finally:
        client.close()
