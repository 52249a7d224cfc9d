"""Webhook receivers for the tests: a real HTTP server in a thread, and one that never answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workers.notify.payload import verify


@dataclass(frozen=True)
class Received:
    """One request the receiver got: its headers (lower-case names), raw body, time (s)."""

    headers: dict[str, str]
    body: bytes
    at_s: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    @property
    def attempt(self) -> int:
        return int(self.headers["x-qwc-attempt"])

    def signed_by(self, secret: str) -> bool:
        return verify(secret, self.body, self.headers.get("x-qwc-signature"))


class Receiver:
    """Records every POST and answers the next status of ``statuses`` (then 200). ``stop``
    closes the port (connections are refused); ``start`` opens the same port again."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: deque[int] = deque()
        self.on_request: Callable[[], None] | None = None  # called before each answer
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with owner._lock:
                    owner.requests.append(Received(headers, body, time.monotonic()))
                    status = owner.statuses.popleft() if owner.statuses else 200
                if owner.on_request is not None:
                    owner.on_request()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answered {status}".encode())

            def log_message(self, *_args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.event for r in self.requests]

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events()]


class SilentReceiver:
    """Accepts connections and never answers (nor closes them) until ``stop``."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/silent"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def stop(self) -> None:
        self._stop.set()
        for conn in self.accepted:
            conn.close()
        self._sock.close()
