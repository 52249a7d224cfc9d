"""Redis URLs: which topology a ``qwcontrol.redis.url`` names (pure; no I/O).

Accepted forms (``rediss`` instead of ``redis`` means TLS everywhere)::

    redis://[user:password@]host[:6379][/db]          one server (redis-py's own parsing)
    unix:///path/to/redis.sock[?db=N]                  one server on a unix socket
    redis+sentinel://[user:password@]host[:26379][,host[:26379]...]/service[/db]
                        [?sentinel_username=U&sentinel_password=P]
                                                       the primary of ``service`` as the
                                                       sentinels report it, re-asked after
                                                       every failover
    redis+cluster://[user:password@]host[:6379][,host[:6379]...]
                                                       a Redis Cluster, from any of its nodes

The credentials in a sentinel URL are the primary's; the sentinels' own (when they need
any) go in the ``sentinel_username`` / ``sentinel_password`` query parameters. Host lists
are comma separated; an IPv6 host is written in brackets (``[::1]:26379``).

The credentials end at the last ``@`` before the query (``?``), so a password may hold
``/ # [ ] @`` unescaped; ``?`` in a password must be written ``%3F``. Errors never echo a
password: not urllib's (which quote bracketed text), and ours name hosts, not ports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import parse_qs, unquote

__all__ = [
    "CLUSTER_DEFAULT_PORT",
    "SENTINEL_DEFAULT_PORT",
    "RedisTarget",
    "Topology",
    "parse_redis_url",
    "redact_url",
]

SENTINEL_DEFAULT_PORT = 26379
CLUSTER_DEFAULT_PORT = 6379
_SENTINEL_QUERY = frozenset({"sentinel_username", "sentinel_password"})


class Topology(StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class RedisTarget:
    """What a Redis URL names. ``nodes`` and the rest are empty for a standalone URL, which
    redis-py parses itself (``url``)."""

    topology: Topology
    url: str = field(repr=False)
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None  # sentinel: the monitored primary's name
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (for logs and errors)."""
        return redact_url(self.url)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse ``url``; raise ValueError saying what is wrong (never echoing a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("no scheme")
    scheme = scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        url = f"{scheme}://{url.partition('://')[2]}"  # redis-py wants a lower-case scheme
        _check_standalone(url)
        return RedisTarget(Topology.STANDALONE, url, tls=scheme == "rediss")
    base, plus, kind = scheme.partition("+")
    if not plus or base not in ("redis", "rediss") or kind not in ("sentinel", "cluster"):
        raise ValueError(f"scheme `{scheme}` is not supported")
    userinfo, hostlist, path, query = _split(rest)
    username, password = _credentials(userinfo) if userinfo is not None else (None, None)
    if kind == "sentinel":
        nodes = _nodes(hostlist, SENTINEL_DEFAULT_PORT)
        service, db = _service_and_db(path)
        params = _query(query, allowed=_SENTINEL_QUERY)
        return RedisTarget(
            Topology.SENTINEL,
            url,
            tls=base == "rediss",
            nodes=nodes,
            service=service,
            db=db,
            username=username,
            password=password,
            sentinel_username=params.get("sentinel_username"),
            sentinel_password=params.get("sentinel_password"),
        )
    nodes = _nodes(hostlist, CLUSTER_DEFAULT_PORT)
    if path not in ("", "/"):
        raise ValueError("a Redis Cluster has only database 0: drop the path")
    _query(query, allowed=frozenset())
    return RedisTarget(
        Topology.CLUSTER,
        url,
        tls=base == "rediss",
        nodes=nodes,
        username=username,
        password=password,
    )


def _check_standalone(url: str) -> None:
    """redis-py's own parsing of a one-server URL (port, ``db``), so a bad one fails here,
    not at the first connect."""
    from redis.connection import parse_url  # imported late: most commands never connect

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:  # its messages name the bad part, never the password
        raise ValueError(str(exc).rstrip(".")) from None


def _split(rest: str) -> tuple[str | None, str, str, str]:
    """``[userinfo@]hosts[/path][?query]`` (what follows ``scheme://``) -> userinfo (None
    without ``@``), hosts, path (with its leading ``/``), query."""
    before_query, _, query = rest.partition("?")
    userinfo, at, address = before_query.rpartition("@")
    hostlist, slash, path = address.partition("/")
    if "#" in address or "#" in query:
        raise ValueError("a URL fragment (#...) is not allowed: write # in a password as %23")
    return (userinfo if at else None), hostlist, slash + path, query


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None, unquote(password) if colon else None)


def _nodes(hostlist: str, default_port: int) -> tuple[tuple[str, int], ...]:
    if not hostlist:
        raise ValueError("no host")
    nodes = []
    for item in hostlist.split(","):
        host, port = _host_port(item.strip(), default_port)
        nodes.append((host, port))
    return tuple(dict.fromkeys(nodes))


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if not item:
        raise ValueError("an empty host in the host list")
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket:
            raise ValueError(f"`{item}`: unclosed IPv6 bracket")
        if not host:
            raise ValueError(f"`{item}`: no address between the brackets")
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ValueError(f"`{item}`: expected :port after the bracket")
    else:
        host, colon, port_text_raw = item.partition(":")
        port_text = port_text_raw if colon else None
        if not host:
            raise ValueError("a host list entry has no host name")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        # the port is not echoed: with an unescaped `?` in a password it may be a piece of it
        raise ValueError(f"host `{host}`: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _service_and_db(path: str) -> tuple[str, int]:
    pieces = [unquote(p) for p in path.split("/") if p]
    if not pieces:
        raise ValueError("no service name: write redis+sentinel://host:26379/<service>")
    if len(pieces) > 2:
        raise ValueError("expected /<service>[/<db>] after the sentinel hosts")
    db = 0
    if len(pieces) == 2:
        if not pieces[1].isdigit():
            raise ValueError(f"database `{pieces[1]}` is not a number")
        db = int(pieces[1])
    return pieces[0], db


def _query(query: str, *, allowed: frozenset[str]) -> dict[str, str]:
    values = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(values) - allowed)
    if unknown:
        name = unknown[0]
        shown = f" `{name}`" if _PARAMETER_NAME.fullmatch(name) else ""  # else maybe a password
        raise ValueError(f"unknown URL parameter{shown}")
    return {name: found[-1] for name, found in values.items()}


def redact_url(url: str) -> str:
    """``url`` with the userinfo's password (split as :func:`parse_redis_url` splits it) and
    any ``password`` / ``sentinel_password`` query value replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    before_query, question, query = rest.partition("?")
    userinfo, at, address = before_query.rpartition("@")
    if at and ":" in userinfo:
        before_query = f"{userinfo.partition(':')[0]}:***@{address}"
    query = _PASSWORD_PARAMETER.sub(r"\1***", query)
    return f"{scheme}{sep}{before_query}{question}{query}"


_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PASSWORD_PARAMETER = re.compile(r"((?:^|&)(?:sentinel_)?password=)[^&]*")
