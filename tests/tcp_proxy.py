"""A TCP proxy of the tests' own, in front of a Redis server, that can stop forwarding while
keeping every connection open: a blackholed Redis, as when packets are silently dropped.

``RedisProxy(upstream_url)`` listens on 127.0.0.1 (a free port) and forwards each
connection to the upstream server (TCP or unix socket, from a ``redis://`` or ``unix://``
URL); :attr:`RedisProxy.url` is the URL clients use instead. :meth:`RedisProxy.blackhole`
stops forwarding in both directions: what is sent is read and held, nothing arrives, no
connection is closed, new connections are accepted and never answered — clients block
until their socket timeout. :meth:`RedisProxy.restore` resumes forwarding.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from redis.connection import parse_url

__all__ = ["RedisProxy"]


class RedisProxy:
    """A blackhole-able TCP proxy (module docstring); ``close()`` ends it."""

    def __init__(self, upstream_url: str) -> None:
        self._upstream: dict[str, Any] = parse_url(upstream_url)
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        """The proxied server's URL: same credentials and database, through the proxy."""
        auth = ""
        if self._upstream.get("password"):
            auth = f"{self._upstream.get('username') or ''}:{self._upstream['password']}@"
        return f"redis://{auth}127.0.0.1:{self.port}/{self._upstream.get('db', 0)}"

    def blackhole(self) -> None:
        """Stop forwarding; keep every connection open."""
        self._forwarding.clear()

    def restore(self) -> None:
        """Forward again (what was held is delivered)."""
        self._forwarding.set()

    def close(self) -> None:
        self._closed.set()
        self._forwarding.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for s in sockets:  # shutdown first: it wakes a thread blocked in recv (close does not)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _connect_upstream(self) -> socket.socket:
        path = self._upstream.get("path")
        if path:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(path)
            return upstream
        host, port = self._upstream.get("host", "127.0.0.1"), self._upstream.get("port", 6379)
        return socket.create_connection((host, port))

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.append(client)
        self._forwarding.wait()  # a connection made while blackholed is never answered
        if self._closed.is_set():
            return
        upstream = self._connect_upstream()
        with self._lock:
            self._sockets.append(upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            self._forwarding.wait()  # blackholed: hold what was read, send nothing
            if not data or self._closed.is_set():
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return
