"""Connecting: the configured URL or the embedded server; timeouts, TLS and unix URLs."""

from __future__ import annotations

from pathlib import Path

from redis.connection import SSLConnection, UnixDomainSocketConnection

from schemas.settings import Settings
from workers.bus.connect import (
    HEALTH_CHECK_INTERVAL_S,
    SOCKET_CONNECT_TIMEOUT_S,
    SOCKET_TIMEOUT_S,
    connect,
    redis_client_name,
    redis_url_for,
)
from workers.bus.embedded import EmbeddedRedis


def test_client_settings(redis_url: str) -> None:
    client = connect(redis_url, client_name="qwc-test-connect")
    try:
        assert client.ping() is True
        assert client.client_getname() == "qwc-test-connect"
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"  # bytes, not str
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == SOCKET_TIMEOUT_S
        assert kwargs["socket_connect_timeout"] == SOCKET_CONNECT_TIMEOUT_S
        assert kwargs["health_check_interval"] == HEALTH_CHECK_INTERVAL_S
        assert kwargs["retry"].get_retries() == 0
    finally:
        client.delete("k")
        client.close()


def test_a_client_name_redis_would_refuse_is_made_acceptable(redis_url: str) -> None:
    # CLIENT SETNAME refuses spaces and control characters: `qwc node --name "web 1"`
    # connected as "node-web 1" and died with a traceback
    client = connect(redis_url, client_name="node-web 1\tcaf\u00e9")
    try:
        assert client.ping() is True
        assert client.client_getname() == "node-web_1_caf_"
    finally:
        client.close()


def test_redis_client_name_keeps_what_redis_accepts() -> None:
    kept = "".join(chr(c) for c in range(ord("!"), ord("~") + 1))
    assert redis_client_name(kept) == kept
    assert redis_client_name("a b\nc\x00d\u00fc\x7f") == "a_b_c_d__"


def test_retries_can_be_turned_on() -> None:
    client = connect("redis://127.0.0.1:1/0", retries=3)
    assert client.connection_pool.connection_kwargs["retry"].get_retries() == 3


def test_tls_url_with_password_and_unix_url() -> None:
    tls = connect("rediss://worker:s3cret@redis.example:6380/2")
    assert tls.connection_pool.connection_class is SSLConnection
    kwargs = tls.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("worker", "s3cret")
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.example", 6380, 2)
    unix = connect("unix:///run/some%20dir/redis.sock?db=3")
    assert unix.connection_pool.connection_class is UnixDomainSocketConnection
    assert unix.connection_pool.connection_kwargs["path"] == "/run/some dir/redis.sock"
    assert unix.connection_pool.connection_kwargs["db"] == 3


def test_redis_url_for_prefers_the_configured_url(tmp_path: Path) -> None:
    configured = Settings(redis_url="redis://127.0.0.1:6379/5", home_dir=tmp_path / "h")
    assert redis_url_for(configured) == "redis://127.0.0.1:6379/5"
    assert redis_url_for("unix:///x.sock") == "unix:///x.sock"
    assert not (tmp_path / "h").exists()  # no embedded server was started


def test_redis_url_for_starts_the_embedded_server(tmp_path: Path) -> None:
    settings = Settings(home_dir=tmp_path / "h")
    try:
        url = redis_url_for(settings)
        assert url == EmbeddedRedis(tmp_path / "h").url()
        client = connect(settings)
        assert client.ping() is True
        client.close()
    finally:
        assert EmbeddedRedis(tmp_path / "h").stop() is True
    assert EmbeddedRedis(tmp_path / "h").url() is None
