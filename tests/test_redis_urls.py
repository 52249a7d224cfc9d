"""Redis URLs: every accepted form and every rejection of ``parse_redis_url`` (pure), that a
parsed target never shows a password, and how the settings report a bad URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigError, ConfigProblem
from schemas.redis_urls import (
    CLUSTER_DEFAULT_PORT,
    SENTINEL_DEFAULT_PORT,
    RedisTarget,
    Topology,
    parse_redis_url,
)
from schemas.settings import load_settings

# --- accepted forms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "tls"),
    [
        ("redis://127.0.0.1:6379/0", False),
        ("redis://:pw@redis.example", False),
        ("rediss://user:pw@redis.example:6380/2", True),
        ("unix:///run/redis.sock?db=3", False),
        ("REDIS://h", False),  # the scheme is case-insensitive
    ],
)
def test_standalone_urls_are_left_to_redis_py(url: str, tls: bool) -> None:
    target = parse_redis_url(url)
    normalized = "redis" + url[len("redis") :] if url.startswith("REDIS") else url
    assert target == RedisTarget(Topology.STANDALONE, normalized, tls=tls)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:notaport", "Port could not be cast to integer value as 'notaport'"),
        ("redis://:s3cret@h:99999", "Port out of range 0-65535"),
        ("unix:///run/redis.sock?db=a", "Invalid value for 'db' in connection URL"),
    ],
)
def test_a_bad_standalone_url_fails_when_parsed_not_at_connect(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    assert str(caught.value) == message


def test_sentinel_defaults() -> None:
    target = parse_redis_url("redis+sentinel://s1/mymaster")
    assert target == RedisTarget(
        Topology.SENTINEL,
        "redis+sentinel://s1/mymaster",
        nodes=(("s1", SENTINEL_DEFAULT_PORT),),
        service="mymaster",
    )
    assert SENTINEL_DEFAULT_PORT == 26379


def test_sentinel_hosts_db_credentials_and_sentinel_credentials() -> None:
    url = (
        "rediss+sentinel://app%3Auser:p%40ss%2Fw%3Ard@s1:26380, s2 ,[::1]:26381,[fe80::1]"
        "/my%20master/7?sentinel_username=watch&sentinel_password=s%26p%3D"
    )
    target = parse_redis_url(url)
    assert target.topology is Topology.SENTINEL
    assert target.tls is True
    assert target.nodes == (
        ("s1", 26380),
        ("s2", SENTINEL_DEFAULT_PORT),
        ("::1", 26381),
        ("fe80::1", SENTINEL_DEFAULT_PORT),
    )
    assert (target.service, target.db) == ("my master", 7)
    assert (target.username, target.password) == ("app:user", "p@ss/w:rd")
    assert (target.sentinel_username, target.sentinel_password) == ("watch", "s&p=")


def test_sentinel_trailing_slash_and_username_without_password() -> None:
    target = parse_redis_url("redis+sentinel://only-user@s1:1/svc/")
    assert (target.username, target.password, target.service, target.db) == (
        "only-user",
        None,
        "svc",
        0,
    )
    empty = parse_redis_url("redis+sentinel://:@s1/svc")  # empty user and password
    assert (empty.username, empty.password) == (None, "")


def test_cluster_defaults_and_several_hosts() -> None:
    assert parse_redis_url("redis+cluster://n1").nodes == (("n1", CLUSTER_DEFAULT_PORT),)
    assert CLUSTER_DEFAULT_PORT == 6379
    target = parse_redis_url("redis+cluster://n1:7000,n2,[::1]:7002,n1:7000/")
    assert target.topology is Topology.CLUSTER
    assert target.tls is False
    assert target.nodes == (("n1", 7000), ("n2", 6379), ("::1", 7002))  # duplicates once
    assert (target.service, target.db, target.username, target.password) == (None, 0, None, None)


def test_cluster_tls_and_credentials() -> None:
    target = parse_redis_url("REDISS+CLUSTER://ops:s%40cret@n1:7000")
    assert target.topology is Topology.CLUSTER
    assert target.tls is True
    assert (target.username, target.password) == ("ops", "s@cret")
    assert target.nodes == (("n1", 7000),)


def test_unescaped_delimiters_in_a_password_stay_in_the_password() -> None:
    """The credentials end at the last ``@`` before the query: ``/ # [ ] @`` may be raw."""
    target = parse_redis_url("redis+sentinel://u:p@s/s#[x]@s1/svc?sentinel_password=a@b")
    assert (target.password, target.nodes, target.service) == ("p@s/s#[x]", (("s1", 26379),), "svc")
    assert target.sentinel_password == "a@b"


# --- rejections --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:6379", "no scheme"),
        ("http://h:6379", "scheme `http` is not supported"),
        ("redis+tls://h", "scheme `redis+tls` is not supported"),
        ("unix+cluster://h", "scheme `unix+cluster` is not supported"),
        ("sentinel://h/svc", "scheme `sentinel` is not supported"),
        ("redis+cluster://", "no host"),
        ("redis+cluster://u:p@", "no host"),
        ("redis+cluster://n1:abc", "host `n1`: the port must be a number from 1 to 65535"),
        ("redis+cluster://n1:0", "host `n1`: the port must be a number from 1 to 65535"),
        ("redis+cluster://n1:65536", "host `n1`: the port must be a number from 1 to 65535"),
        ("redis+cluster://n1:", "host `n1`: the port must be a number from 1 to 65535"),
        ("redis+cluster://n1:-1", "host `n1`: the port must be a number from 1 to 65535"),
        ("redis+sentinel://[::1]:x/svc", "host `::1`: the port must be a number from 1 to 65535"),
        ("redis+cluster://n1,,n2", "an empty host in the host list"),
        ("redis+cluster://n1,", "an empty host in the host list"),
        ("redis+cluster://:7000", "a host list entry has no host name"),
        ("redis+sentinel://s1", "no service name: write redis+sentinel://host:26379/<service>"),
        ("redis+sentinel://s1/", "no service name: write redis+sentinel://host:26379/<service>"),
        ("redis+sentinel://s1/svc/0/x", "expected /<service>[/<db>] after the sentinel hosts"),
        ("redis+sentinel://s1/svc/one", "database `one` is not a number"),
        ("redis+cluster://n1/0", "a Redis Cluster has only database 0: drop the path"),
        ("redis+cluster://n1:7000/x", "a Redis Cluster has only database 0: drop the path"),
        ("redis+cluster://n1?sentinel_password=x", "unknown URL parameter `sentinel_password`"),
        ("redis+sentinel://s1/svc?db=2", "unknown URL parameter `db`"),
        ("redis+sentinel://s1/svc?sentinel_password=x&zz=1&aa=2", "unknown URL parameter `aa`"),
        ("redis+cluster://[::1:7000", "`[::1:7000`: unclosed IPv6 bracket"),
        ("redis+cluster://n1,[::1", "`[::1`: unclosed IPv6 bracket"),
        ("redis+cluster://[]:7000", "`[]:7000`: no address between the brackets"),
        ("redis+cluster://[::1]7000", "`[::1]7000`: expected :port after the bracket"),
        ("redis+sentinel://s1/svc#top", "a URL fragment (#...) is not allowed"),
    ],
)
def test_rejections_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://u:s3cr?et@n1",  # an unescaped ? cuts the password: no host name
        "redis+cluster://u:s3cr?et@n1:7000",  # ... a host "u" with the port "s3cr"
        "redis+cluster://u:6379?s3cr@n1",  # ... a query parameter named "s3cr@n1"
        "redis+sentinel://u:6379?s3cr@n1/svc",
        "redis+sentinel://:s3cr[et@s1",  # a bracket no longer reaches urllib's IPv6 check
        "redis+sentinel://:s3cr]et@[::1/svc",
        "redis+cluster://:s3cr@n1/0",
        "redis+sentinel://:s3cr@s1/svc/x?sentinel_password=s3cr",
    ],
)
def test_rejections_never_echo_a_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    assert "s3cr" not in str(caught.value)


# --- passwords stay hidden ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "redis+sentinel://app:pw%2Fx@s1,s2/svc/1?sentinel_username=w&sentinel_password=spw",
            "redis+sentinel://app:***@s1,s2/svc/1?sentinel_username=w&sentinel_password=***",
        ),
        (
            "rediss+sentinel://s1/svc?sentinel_password=spw&sentinel_username=w",
            "rediss+sentinel://s1/svc?sentinel_password=***&sentinel_username=w",
        ),
        ("redis+cluster://:pw@n1:7000,n2", "redis+cluster://:***@n1:7000,n2"),
        ("rediss+cluster://ops@n1", "rediss+cluster://ops@n1"),  # no password: as is
        ("redis+sentinel://u:p@w/x#y@s1/svc", "redis+sentinel://u:***@s1/svc"),
        ("rediss://u:pw@h:6380/0", "rediss://u:***@h:6380/0"),
        ("redis://h:6379/0?password=pw&db=1", "redis://h:6379/0?password=***&db=1"),
        ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_redacted_hides_every_password(url: str, redacted: str) -> None:
    assert parse_redis_url(url).redacted() == redacted


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://app:Pa55%40word@s1/svc?sentinel_password=Sent1nel%26pw",
        "rediss+sentinel://app:Pa55@word@s1:26380/svc/2?sentinel_password=Sent1nel@pw",
        "redis+cluster://ops:Pa55%40word@n1:7000,n2:7001",
        "rediss+cluster://ops:Pa55]w[ord@[::1]:7000",
    ],
)
def test_repr_and_redacted_never_show_the_passwords(url: str) -> None:
    target = parse_redis_url(url)
    assert target.password is not None
    shown = [repr(target), str(target), target.redacted()]
    secrets = {target.password, "Pa55"}
    if target.sentinel_password is not None:
        secrets |= {target.sentinel_password, "Sent1nel"}
    for text in shown:
        for secret in secrets:
            assert secret not in text, (secret, text)
    assert target.nodes[0][0] in repr(target)  # the repr still says what it points at


# --- settings ----------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qwc.properties"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(
    tmp_path: Path, text: str, environ: dict[str, str] | None = None
) -> list[ConfigProblem]:
    """The problems of loading ``text`` as the config file (and only ``environ``)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text), environ=environ or {})
    return caught.value.problems


def test_a_bad_redis_url_in_the_file_names_the_key_and_why(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, "\nqwcontrol.redis.url=redis+sentinel://s1:26379\n")
    assert (problem.key, problem.line) == ("qwcontrol.redis.url", 2)
    assert problem.source == str(tmp_path / "qwc.properties")
    assert "redis+cluster://host:6379" in problem.allowed  # the forms allowed
    assert "(no service name: write redis+sentinel://host:26379/<service>)" in problem.allowed
    (port,) = _problems(tmp_path, "qwcontrol.redis.url=redis+cluster://n1:99999\n")
    assert port.key == "qwcontrol.redis.url"
    assert "host `n1`: the port must be a number from 1 to 65535" in port.allowed


def test_a_cluster_url_for_rq_is_refused_naming_its_key(tmp_path: Path) -> None:
    text = (
        "qwcontrol.redis.url=redis+cluster://n1:7000,n2:7001\n"
        "qwcontrol.rq.redis.url=redis+cluster://n1:7000\n"
    )
    (problem,) = _problems(tmp_path, text)
    assert (problem.key, problem.line) == ("qwcontrol.rq.redis.url", 2)
    assert "RQ does not run on Redis Cluster" in problem.allowed
    assert "redis+cluster" not in problem.allowed.partition("(")[0]  # not among the forms


def test_rq_url_rejects_a_malformed_url_too(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, "qwcontrol.rq.redis.url=redis+sentinel://s1\n")
    assert problem.key == "qwcontrol.rq.redis.url"
    assert "no service name" in problem.allowed


def test_topology_urls_load_from_the_file_and_the_environment(tmp_path: Path) -> None:
    text = (
        "qwcontrol.redis.url=rediss+cluster://ops:pw@n1:7000,n2:7001\n"
        "qwcontrol.rq.redis.url=redis+sentinel://s1,s2:26380/rq/1\n"
    )
    settings = load_settings(_write(tmp_path, text), environ={})
    assert settings.redis_url == "rediss+cluster://ops:pw@n1:7000,n2:7001"
    assert settings.rq_redis_url == "redis+sentinel://s1,s2:26380/rq/1"
    env = {"QWC_RQ_REDIS_URL": "redis+sentinel://s1/svc"}
    assert load_settings(_write(tmp_path, ""), environ=env).rq_redis_url == env["QWC_RQ_REDIS_URL"]
    (problem,) = _problems(tmp_path, "", {"QWC_RQ_REDIS_URL": "rediss+cluster://n1"})
    assert problem.key == "qwcontrol.rq.redis.url"
    assert problem.source == "environment (QWC_RQ_REDIS_URL)"


def test_a_rejected_url_is_reported_without_its_password(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, "qwcontrol.redis.url=redis+sentinel://:s3cret@s1\n")
    assert "s3cret" not in str(problem)
