"""The web page: ``GET /`` sends the browser to ``/ui/``, where the page's HTML, CSS and
JavaScript are served from ``workers/manager/static/`` (package data: no build step, no
network at run time).

The page's files carry no data, so they are served without a token; the page calls the
JSON API with the token the user typed (``Authorization: Bearer``), and the API checks
it. Every answer of the page's files forbids loading anything from another origin
(``Content-Security-Policy``): the page cannot come to depend on a CDN unnoticed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["PAGE_HEADERS", "STATIC_DIR", "mount_page"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE_PATH = "/ui"

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    """The page lives under ``/ui/`` (relative links, so it also works behind a proxy
    that serves the manager under a sub-path)."""
    return RedirectResponse("ui/", status_code=307)


class PageFiles(StaticFiles):
    """The page's static files, each answer with ``PAGE_HEADERS``."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def mount_page(app: FastAPI) -> None:
    """Serve the page on ``app``: ``/`` and ``/ui/…`` (neither is in the OpenAPI
    document)."""
    app.include_router(router)
    app.mount(PAGE_PATH, PageFiles(directory=STATIC_DIR, html=True), name="ui")
