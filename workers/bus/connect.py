"""Redis clients for the workers: the configured URL, else the embedded server of the home.

Every client has a socket timeout (SOCKET_TIMEOUT_S) so a silent network failure surfaces as
a ``redis.TimeoutError`` instead of hanging; blocking reads therefore never block longer
than BLOCK_MS_MAX, well under that timeout.

redis-py's own silent retries are off by default (``retries=0``): a command that loses its
connection raises ``redis.ConnectionError`` to the caller, whose loop
(:func:`workers.bus.retry.run_forever`) logs it and retries with backoff. The pool drops the
broken connection and the next command connects afresh, so nothing else is needed to
recover after a Redis restart or ``CLIENT KILL``.

Topologies (URL forms in :mod:`schemas.redis_urls`): one server; a Sentinel-monitored primary
(``redis+sentinel://``), whose address is asked of the sentinels again on every new
connection, so the first command after a failover reaches the new primary; a Redis Cluster
(``redis+cluster://``). Every key of one QW Control cluster carries the hash tag
``{prefix}`` (:mod:`schemas.keys`), so on Redis Cluster all of them live in one slot: multi-key
scripts and pipelines work unchanged, and the server clock (``TIME``) is read on the node that
owns that slot, the same clock that stamps the stream entry ids.

RQ does not run on Redis Cluster (rq/rq#1942: its keys span slots); see
:func:`rq_redis_url_for` for where a member's execution queue lives then.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from schemas.redis_urls import RedisTarget, Topology, parse_redis_url
from workers.bus.embedded import EmbeddedRedis

__all__ = [
    "BLOCK_MS_MAX",
    "HEALTH_CHECK_INTERVAL_S",
    "SOCKET_CONNECT_TIMEOUT_S",
    "SOCKET_TIMEOUT_S",
    "RedisSettings",
    "connect",
    "redis_client_name",
    "redis_url_for",
    "rq_redis_url_for",
    "server_run_id",
    "shares_rq_redis",
]

SOCKET_TIMEOUT_S = 10.0
SOCKET_CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 15
BLOCK_MS_MAX = 2000  # every blocking XREADGROUP blocks at most this long (< SOCKET_TIMEOUT_S)
# Redis checks BLOCK timeouts when its event loop wakes: at the next command or server tick
# (every 100 ms at the default hz 10), so a BLOCK may end up to that much late. A loop with
# a deadline blocks until this long before it and waits out the rest itself.
BLOCK_TIMER_SLACK_MS = 100
# What ``CLIENT SETNAME`` accepts: printable ASCII without the space, '!' to '~'.
_NOT_IN_CLIENT_NAMES = re.compile(r"[^!-~]")


class RedisSettings(Protocol):
    """What this module reads of :class:`schemas.settings.Settings`."""

    @property
    def redis_url(self) -> str | None: ...

    @property
    def home_dir(self) -> Path: ...

    @property
    def redis_prefix(self) -> str: ...

    @property
    def rq_redis_url(self) -> str | None: ...


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


def rq_redis_url_for(settings: RedisSettings) -> str:
    """The Redis of a member's RQ execution queue: ``qwcontrol.rq.redis.url`` when set;
    else the cluster's own Redis (``redis_url_for``), unless that is a Redis Cluster, which
    RQ cannot use: then the embedded server of this member's home (started if needed).

    Only the member itself enqueues on and works its queue, so a member-local Redis is
    enough; commands reach the member through the cluster's Redis either way.
    """
    if settings.rq_redis_url:
        return settings.rq_redis_url
    url = redis_url_for(settings)
    if parse_redis_url(url).topology is Topology.CLUSTER:
        return EmbeddedRedis(settings.home_dir).ensure()
    return url


def shares_rq_redis(settings: RedisSettings) -> bool:
    """True when every process of the cluster reaches a member's RQ queue through the same
    Redis as this one (so it may tell an RQ job to stop). False with a Redis Cluster and no
    ``qwcontrol.rq.redis.url``: each member's queue is then in its own embedded Redis."""
    if settings.rq_redis_url:
        return True
    url = settings.redis_url
    return url is None or parse_redis_url(url).topology is not Topology.CLUSTER


class _SlotClockCluster(RedisCluster):
    """A RedisCluster whose ``TIME`` is read on the node owning ``anchor_key``'s slot (the
    cluster's keys all share it), not on every node as redis-py does by default."""

    anchor_key = "{qwc}"

    def time(self, **kwargs: object) -> tuple[int, int]:  # type: ignore[override]
        if "target_nodes" not in kwargs:
            kwargs["target_nodes"] = self.get_node_from_key(self.anchor_key)  # type: ignore[no-untyped-call]
        return super().time(**kwargs)  # type: ignore[return-value]


def redis_client_name(name: str) -> str:
    """``name`` as Redis accepts it for ``CLIENT SETNAME`` (which refuses spaces, newlines
    and every other character outside ``!``..``~``): each such character becomes ``_``, so
    a member named ``web 1`` connects as ``node-web_1`` instead of failing to connect."""
    return _NOT_IN_CLIENT_NAMES.sub("_", name)


def server_run_id(client: redis.Redis) -> str:
    """The ``run_id`` of the Redis server holding the cluster's keys (``INFO server``): it
    changes when Redis restarts or fails over to another server. On a Redis Cluster, of the
    node owning the ``{prefix}`` slot."""
    if isinstance(client, _SlotClockCluster):
        node = client.get_node_from_key(client.anchor_key)  # type: ignore[no-untyped-call]
        info = client.info("server", target_nodes=node)
    else:
        info = client.info("server")
    return str(info["run_id"])


def connect(
    settings_or_url: RedisSettings | str,
    *,
    client_name: str | None = None,
    retries: int = 0,
    prefix: str | None = None,
) -> redis.Redis:
    """A client (bytes responses) for the URL (see :mod:`schemas.redis_urls`): one server
    (``redis://``, ``rediss://`` TLS, ``unix://``), a Sentinel-monitored primary or a Redis
    Cluster.

    Credentials, database number and TLS options come from the URL. ``client_name`` is set
    on every connection (``CLIENT LIST`` shows it), made acceptable to Redis first
    (:func:`redis_client_name`: it may come from a member's name). ``retries`` > 0 lets
    redis-py retry a command that lost its connection that many times, silently, with
    10 ms..1 s jittered backoff. ``prefix`` (default: the settings' ``redis_prefix``, else
    ``qwc``) names the hash slot whose node gives the clock on a Redis Cluster. Connecting
    is lazy: an unreachable server raises ``redis.ConnectionError`` on the first command.
    The caller closes the client.

    A Redis Cluster client is a ``redis.cluster.RedisCluster``; it offers every command this
    project sends, with the same signatures, and is typed as ``redis.Redis`` here.
    """
    url = redis_url_for(settings_or_url)
    if prefix is None:
        prefix = "qwc" if isinstance(settings_or_url, str) else settings_or_url.redis_prefix
    retry = (
        Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), retries)
        if retries > 0
        else Retry(NoBackoff(), 0)
    )
    common: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "client_name": None if client_name is None else redis_client_name(client_name),
        "retry": retry,
    }
    target = parse_redis_url(url)
    if target.topology is Topology.SENTINEL:
        return _sentinel_primary(target, common)
    if target.topology is Topology.CLUSTER:
        return _cluster(target, common, prefix)
    client: redis.Redis = redis.Redis.from_url(target.url, decode_responses=False, **common)
    return client


def _auth(target: RedisTarget) -> dict[str, Any]:
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.tls:
        auth["ssl"] = True
    return auth


def _sentinel_primary(target: RedisTarget, common: dict[str, Any]) -> redis.Redis:
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S,
        "username": target.sentinel_username,
        "password": target.sentinel_password,
    }
    if target.tls:
        sentinel_kwargs["ssl"] = True
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    assert target.service is not None  # parse_redis_url requires it
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.service, decode_responses=False, db=target.db, **_auth(target), **common
    )
    return client


def _cluster(target: RedisTarget, common: dict[str, Any], prefix: str) -> redis.Redis:
    client = _SlotClockCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],  # type: ignore[no-untyped-call]
        decode_responses=False,
        **_auth(target),
        **common,
    )
    client.anchor_key = f"{{{prefix}}}"
    return cast(redis.Redis, client)
