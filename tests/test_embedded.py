"""The embedded Redis server: one per data directory, shared, restartable, crash-tolerant."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import redis

from schemas.errors import EmbeddedRedisError
from workers.bus.embedded import SOCKET_PATH_MAX_BYTES, EmbeddedRedis

_ENSURE_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time
    from workers.bus.embedded import EmbeddedRedis
    home, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    deadline = time.monotonic() + 30
    while not go.exists():  # start together
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
    print(EmbeddedRedis(home).ensure())
    """
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path / "home")
    try:
        yield embedded
    finally:
        embedded.stop()


def _servers_in(home: Path) -> list[int]:
    """Pids of redis-server processes whose working directory is ``home``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (
                b"redis-server" in (proc / "cmdline").read_bytes()
                and Path(os.readlink(proc / "cwd")) == home.resolve()
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


def _socket_of(url: str) -> Path:
    assert url.startswith("unix://")
    return Path(unquote(url.removeprefix("unix://")))


def test_not_running_before_ensure(server: EmbeddedRedis) -> None:
    assert server.url() is None
    status = server.status()
    assert status == {
        "running": False,
        "url": None,
        "pid": None,
        "home": str(server.home),
        "version": None,
    }
    assert server.stop() is False
    assert not server.home.exists()  # neither status nor stop creates the directory


def test_ensure_starts_a_unix_socket_server(server: EmbeddedRedis) -> None:
    url = server.ensure()
    assert url == f"unix://{server.home / 'redis.sock'}"
    assert server.ensure() == url  # found, not started again
    client = redis.Redis.from_url(url)
    try:
        config = client.config_get("*")
        assert config["port"] == "0"
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert config["save"] == ""
        assert client.info("server")["redis_version"].startswith("6.2")
        client.xgroup_create("s", "g", id="0", mkstream=True)
        assert client.xautoclaim("s", "g", "c", 0)[0] == b"0-0"  # streams + XAUTOCLAIM
    finally:
        client.close()
    assert oct(_socket_of(url).stat().st_mode & 0o777) == "0o700"
    assert oct((server.home / "appendonly.aof").stat().st_mode & 0o777) == "0o600"
    status = server.status()
    assert status["running"] is True
    assert status["url"] == url
    assert _servers_in(server.home) == [status["pid"]]


def test_concurrent_ensure_starts_one_server(server: EmbeddedRedis, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENSURE_SCRIPT, str(server.home), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in results]
    urls = {out.strip() for out, _ in results}
    assert urls == {f"unix://{server.home / 'redis.sock'}"}
    assert _servers_in(server.home) == [server.status()["pid"]]


def test_stop_then_ensure_restarts_and_keeps_data(server: EmbeddedRedis) -> None:
    url = server.ensure()
    client = redis.Redis.from_url(url)
    client.set("kept", b"across restarts")
    client.close()
    first_pid = server.status()["pid"]

    assert server.stop() is True
    assert _wait_gone(first_pid)
    assert server.url() is None
    assert not _socket_of(url).exists()
    assert server.stop() is False

    assert server.ensure() == url
    second_pid = server.status()["pid"]
    assert second_pid != first_pid
    client = redis.Redis.from_url(url)
    try:
        assert client.get("kept") == b"across restarts"  # from the AOF
    finally:
        client.close()


def test_long_home_path_uses_a_hashed_socket_in_the_temp_dir(tmp_path: Path) -> None:
    home = tmp_path / ("h" * 60) / ("o" * 60)
    assert len(os.fsencode(home / "redis.sock")) > SOCKET_PATH_MAX_BYTES
    embedded = EmbeddedRedis(home)
    try:
        url = embedded.ensure()
        sock = _socket_of(url)
        assert sock.parent == Path(tempfile.gettempdir()) / f"qwc-{os.getuid()}"
        assert len(os.fsencode(sock)) <= SOCKET_PATH_MAX_BYTES
        assert (home / "redis.socket").read_text().strip() == str(sock)
        other = EmbeddedRedis(home)  # another process finds it through the record
        assert other.url() == url
        assert other.status()["running"] is True
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        client.close()
        assert other.stop() is True
        assert not sock.exists()
    finally:
        embedded.stop()


def test_a_temp_dir_too_long_for_a_socket_falls_back_to_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long home under a long $TMPDIR (as pytest-xdist's, or macOS's) still gets a socket:
    under /tmp. Before, the embedded Redis refused to start."""
    long_temp = tmp_path / ("t" * 70)
    long_temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(long_temp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads $TMPDIR again
    home = long_temp / ("h" * 60)
    embedded = EmbeddedRedis(home)
    try:
        sock = _socket_of(embedded.ensure())
        assert sock.parent == Path("/tmp") / f"qwc-{os.getuid()}"
        assert len(os.fsencode(sock)) <= SOCKET_PATH_MAX_BYTES
        assert EmbeddedRedis(home).status()["running"] is True
    finally:
        embedded.stop()
        monkeypatch.setattr(tempfile, "tempdir", None)


@pytest.mark.parametrize("stale", ["dead-pid", "live-pid-not-redis"])
def test_stale_pidfile_and_socket_do_not_block_a_start(server: EmbeddedRedis, stale: str) -> None:
    server.home.mkdir(parents=True)
    if stale == "dead-pid":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        pid = gone.pid
    else:
        pid = os.getpid()  # alive, but not a redis-server in this home
    (server.home / "redis.pid").write_text(f"{pid}\n")
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(server.home / "redis.sock"))  # a socket file nobody listens on
    assert server.status()["running"] is False

    url = server.ensure()

    status = server.status()
    assert status["running"] is True
    assert status["pid"] != pid
    assert status["url"] == url
    assert int((server.home / "redis.pid").read_text()) == status["pid"]


def test_a_server_that_cannot_start_raises_with_its_log(server: EmbeddedRedis) -> None:
    server.home.mkdir(parents=True)
    (server.home / "appendonly.aof").write_bytes(b"this is not an append only file\n")
    with pytest.raises(EmbeddedRedisError) as caught:
        server.ensure()
    message = str(caught.value)
    assert "redis.log" in message
    assert "append only file" in message.lower() or "aof" in message.lower()
    assert server.url() is None
