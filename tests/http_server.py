"""A local HTTP server for the ``http`` executor's tests (``http_server``: its base URL).

Paths: ``/ok`` (200, echoes the ``X-Qwc-*`` and ``X-T*`` headers as JSON), ``/created``
(201), ``/fail`` (500), ``/moved`` (301), ``/big`` (5000 bytes then ``END``), ``/slow``
(answers once released, at most 10 s), ``/dribble`` (a byte every 50 ms until released;
``Handler.dribbling`` is set after the first);
POST answers 201 ``got <body>``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["Handler", "http_server"]


class Handler(BaseHTTPRequestHandler):
    release = threading.Event()
    dribbling = threading.Event()  # set once ``/dribble`` has sent its first byte

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.release.wait(10)
        if self.path == "/dribble":
            self._dribble()
            return
        status = {"/created": 201, "/fail": 500, "/moved": 301}.get(self.path, 200)
        body = b"x" * 5000 + b"END" if self.path == "/big" else self._echo()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        sent = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        body = b"got " + sent
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _echo(self) -> bytes:
        seen = {k: v for k, v in self.headers.items() if k.lower().startswith(("x-qwc", "x-t"))}
        return json.dumps(seen, sort_keys=True).encode()

    def _dribble(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            self.wfile.write(b".")
            self.wfile.flush()
            self.dribbling.set()
            if self.release.wait(0.05):
                return

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """The URL of a local HTTP server (``Handler``), stopped after the test."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    Handler.release.clear()
    Handler.dribbling.clear()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        Handler.release.set()
        httpd.shutdown()
        httpd.server_close()
