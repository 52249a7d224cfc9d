"""Request bodies are bounded before anything reads them: :class:`BodyLimit`.

A pure ASGI middleware, the manager app's outermost layer of its own, so it runs before
routing and before authentication (a FastAPI dependency, which runs only after a route's
body has been read: without this layer, 100 MB sent without a token were read whole).

* A ``Content-Length`` over the limit is answered 413 at once: the app is not called and
  not a byte of the body is read.
* A body of unknown length (``Transfer-Encoding: chunked``) is counted as the app reads
  it; the read that passes the limit raises :class:`BodyTooLarge` instead of returning the
  chunk, so at most the limit plus one chunk (the server's, 64 KiB with uvicorn) is ever
  held. ``BodyTooLarge`` is an ``HTTPException``: the app's handlers answer it as JSON like
  every other error (``workers.manager.errors``); should one escape them, this layer does.

The 413 carries ``Connection: close``, so the server drops the connection instead of
reading the rest of the body to reuse it.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.errors import QwcError
from workers.manager.errors import error_response

__all__ = ["BodyLimit", "BodyTooLarge"]

CLOSE = {"Connection": "close"}


class BodyTooLarge(QwcError, HTTPException):
    """A request body over ``limit_bytes`` (qwcontrol.manager.maxBodyBytes): 413."""

    def __init__(self, limit_bytes: int) -> None:
        message = (
            f"the request body is larger than {limit_bytes} bytes, the limit "
            "(qwcontrol.manager.maxBodyBytes)"
        )
        super().__init__(413, message, headers=CLOSE)


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` in bytes; None when absent (the server refuses a
    malformed one before the app sees the request)."""
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


class BodyLimit:
    """Answer 413 to every HTTP request whose body is over ``max_body_bytes``, reading at
    most ``max_body_bytes`` of it (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        received_bytes = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received_bytes
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise  # half a response is out: nothing to answer, the server drops it
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = BodyTooLarge(self.max_body_bytes)
        response = error_response(Request(scope), 413, exc.detail, headers=CLOSE)
        await response(scope, receive, send)
