"""The manager refuses request bodies over qwcontrol.manager.maxBodyBytes with 413 before
reading them, before authentication: a declared ``Content-Length`` over the limit is
answered without reading a byte, a chunked body is read no further than the limit.

In process, over httpx's ``ASGITransport``, which hands the app the request body one
chunk at a time, as the test's generator yields them: what the generator was asked for is
what was read. No Redis or store is needed: nothing here gets past the limit and auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from schemas.settings import Settings
from workers.manager.app import create_app
from workers.manager.body_limit import BodyLimit

LIMIT = 4096
CHUNK = 1000
TOKEN = "body-limit-token"
TAKEOVERS = "/api/cluster/takeovers"


@dataclass
class Body:
    """A request body of ``size`` bytes in CHUNK-byte pieces; counts the pieces taken."""

    size: int
    taken: int = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        left = self.size
        while left > 0:
            self.taken += 1
            yield b"x" * min(CHUNK, left)
            left -= CHUNK

    def content(self, *, declared: bool) -> tuple[AsyncIterator[bytes], dict[str, str]]:
        """The stream, and its headers: a Content-Length, or none (sent chunked)."""
        return self.chunks(), {"Content-Length": str(self.size)} if declared else {}


class Echo:
    """An app that reads the whole body and answers its length."""

    calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = await Request(scope, receive).body()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def post(
    app: object, url: str, body: Body, *, declared: bool, method: str = "POST", **kw: str
) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            content, headers = body.content(declared=declared)
            return await client.request(method, url, content=content, headers=headers | kw)

    return asyncio.run(call())


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json() | {"apiversion": 40} == {
        "error": True,
        "errorCode": "api.error.request.toolarge",
        "message": f"the request body is larger than {LIMIT} bytes, the limit "
        "(qwcontrol.manager.maxBodyBytes)",
        "apiversion": 40,  # on the compatible calls (when routed)
    }
    assert response.headers["connection"] == "close"


# --- the middleware ---------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    echo = Echo()
    body = Body(LIMIT + 1)
    response = post(BodyLimit(echo, max_body_bytes=LIMIT), "/", body, declared=True)
    assert_refused(response)
    assert (echo.calls, body.taken) == (0, 0)  # neither the app nor a byte of the body


def test_a_chunked_body_is_read_no_further_than_the_limit() -> None:
    echo = Echo()
    body = Body(100 * LIMIT)
    response = post(BodyLimit(echo, max_body_bytes=LIMIT), "/", body, declared=False)
    assert_refused(response)
    assert echo.calls == 1
    assert body.taken == LIMIT // CHUNK + 1  # the chunk that crossed the limit, no more


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [LIMIT, LIMIT - 1, 0])
def test_a_body_up_to_the_limit_is_read_whole(declared: bool, size: int) -> None:
    body = Body(size)
    response = post(BodyLimit(Echo(), max_body_bytes=LIMIT), "/", body, declared=declared)
    assert (response.status_code, response.text) == (200, str(size))


# --- the manager's app: before authentication -------------------------------------------


@pytest.fixture
def manager(tmp_path: Path) -> object:
    settings = Settings(home_dir=tmp_path, manager_token=TOKEN, manager_max_body_bytes=LIMIT)
    return create_app(settings)  # Redis and the store are never opened: nothing gets that far


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_the_manager_refuses_a_large_body_before_asking_for_a_token(
    manager: object, declared: bool
) -> None:
    body = Body(100 * LIMIT)
    assert_refused(post(manager, TAKEOVERS, body, declared=declared))
    assert body.taken <= LIMIT // CHUNK + 1
    body = Body(100 * LIMIT)  # a compatible call, which reads its body itself
    auth = {"Authorization": f"Bearer {TOKEN}"}
    compat = "/api/40/scheduler/takeover"
    assert_refused(post(manager, compat, body, declared=declared, method="PUT", **auth))
    assert body.taken <= LIMIT // CHUNK + 1


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_at_the_limit_goes_on_to_authentication_and_validation(
    manager: object, declared: bool
) -> None:
    assert post(manager, TAKEOVERS, Body(LIMIT), declared=declared).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = post(manager, TAKEOVERS, Body(LIMIT), declared=declared, **auth)
    assert answer.status_code == 422  # read whole, then refused as the JSON it is not
    assert answer.json()["errorCode"] == "api.error.invalid.request"


def test_the_limit_defaults_to_1_mib() -> None:
    assert Settings().manager_max_body_bytes == 1024 * 1024
