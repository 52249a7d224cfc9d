"""Redis clients for the workers: the configured URL, else the embedded server of the home.

Every client has a socket timeout (SOCKET_TIMEOUT_S) so a silent network failure surfaces as
a ``redis.TimeoutError`` instead of hanging; blocking reads therefore never block longer
than BLOCK_MS_MAX, well under that timeout.

redis-py's own silent retries are off by default (``retries=0``): a command that loses its
connection raises ``redis.ConnectionError`` to the caller, whose loop
(:func:`workers.bus.retry.run_forever`) logs it and retries with backoff. The pool drops the
broken connection and the next command connects afresh, so nothing else is needed to
recover after a Redis restart or ``CLIENT KILL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from workers.bus.embedded import EmbeddedRedis

__all__ = [
    "BLOCK_MS_MAX",
    "HEALTH_CHECK_INTERVAL_S",
    "SOCKET_CONNECT_TIMEOUT_S",
    "SOCKET_TIMEOUT_S",
    "RedisSettings",
    "connect",
    "redis_url_for",
]

SOCKET_TIMEOUT_S = 10.0
SOCKET_CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 15
BLOCK_MS_MAX = 2000  # every blocking XREADGROUP blocks at most this long (< SOCKET_TIMEOUT_S)
# Redis checks BLOCK timeouts when its event loop wakes: at the next command or server tick
# (every 100 ms at the default hz 10), so a BLOCK may end up to that much late. A loop with
# a deadline blocks until this long before it and waits out the rest itself.
BLOCK_TIMER_SLACK_MS = 100


class RedisSettings(Protocol):
    """What this module reads of :class:`schemas.settings.Settings`."""

    @property
    def redis_url(self) -> str | None: ...

    @property
    def home_dir(self) -> Path: ...


def redis_url_for(settings: RedisSettings | str) -> str:
    """The Redis URL to use: a plain string as given, else ``settings.redis_url``, else the
    URL of the embedded server of ``settings.home_dir`` (started if needed).

    Raises schemas.errors.EmbeddedRedisError when the embedded server cannot be started.
    """
    if isinstance(settings, str):
        return settings
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.home_dir).ensure()


def connect(
    settings_or_url: RedisSettings | str,
    *,
    client_name: str | None = None,
    retries: int = 0,
) -> redis.Redis:
    """A client (bytes responses) for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs.

    Credentials, database number and TLS options come from the URL. ``client_name`` is set
    on every connection (``CLIENT LIST`` shows it). ``retries`` > 0 lets redis-py retry a
    command that lost its connection that many times, silently, with 10 ms..1 s jittered
    backoff. Connecting is lazy: an unreachable server raises ``redis.ConnectionError`` on
    the first command. The caller closes the client.
    """
    url = redis_url_for(settings_or_url)
    retry = (
        Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), retries)
        if retries > 0
        else Retry(NoBackoff(), 0)
    )
    client: redis.Redis = redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        client_name=client_name,
        retry=retry,
    )
    return client
