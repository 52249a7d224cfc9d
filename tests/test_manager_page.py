"""The manager's web page, in-process: ``/`` leads to ``/ui/``, whose files are served without
a token, forbid loading from another origin and reference nothing elsewhere, and ship as
package data; the only routes outside the API's routers are the page's. And the page's
timeline source, ``GET /api/cluster/membership``: the membership stream, newest first."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
import redis
from starlette.routing import Mount, Route

from tests.cluster import membership_changes, new_uuid
from tests.manager_fixtures import KEYS, Api, ClusterView
from workers.manager.app import ROUTERS
from workers.manager.routes import membership, page
from workers.manager.routes.page import PAGE_HEADERS, STATIC_DIR

ROOT = Path(__file__).resolve().parent.parent
PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


def test_root_leads_to_the_page_served_without_a_token(api: Api) -> None:
    root = api.get("/", token=None)
    assert root.status_code == 307 and root.headers["location"] == "ui/"
    for name, kind in PAGE_FILES.items():
        path = "/ui/" if name == "index.html" else f"/ui/{name}"
        answer = api.get(path, token=None)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["content-type"].startswith(kind), path
        assert answer.text == (STATIC_DIR / name).read_text()
        for header, value in PAGE_HEADERS.items():
            assert answer.headers[header] == value, (path, header)
    assert "default-src 'none'" in PAGE_HEADERS["Content-Security-Policy"]
    missing = api.get("/ui/missing.js", token=None)
    assert missing.status_code == 404 and missing.json()["error"] is True
    # the page's files carry no data: the data calls still need the token
    assert api.get("/api/cluster/members", token=None).status_code == 401


def test_the_page_loads_nothing_from_elsewhere() -> None:
    index = (STATIC_DIR / "index.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', index)
    assert sorted(sources) == ["../openapi.json", "app.js", "data:,", "style.css"]
    for name in PAGE_FILES:
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"https?://|(?<![\w:])//[\w.-]+\.\w", text), name
        assert "@import" not in text and "url(" not in text, name


def test_the_page_routes_are_open_and_undocumented(api: Api) -> None:
    """Besides the API's routers (each with its auth: test_manager_auth), the app serves the
    OpenAPI pages and the page: ``/`` and the ``/ui`` mount, none of them in the document."""
    served = {route.path for route in api.app.routes if isinstance(route, Route | Mount)}
    assert served == {"/ui", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    assert [(r.path, r.methods, r.include_in_schema) for r in page.router.routes] == [
        ("/", {"GET"}, False)
    ]
    assert page.router not in ROUTERS
    documented = api.get("/openapi.json").json()["paths"]
    assert "/" not in documented and not any(p.startswith("/ui") for p in documented)


def test_the_page_files_are_package_data() -> None:
    """A non-editable install ships them: pyproject's package-data for ``workers.manager``
    matches every file of the static directory."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["workers.manager"]
    package_dir = STATIC_DIR.parent
    files = [p.relative_to(package_dir).as_posix() for p in STATIC_DIR.iterdir()]
    assert sorted(p.split("/")[-1] for p in files) == sorted(PAGE_FILES)
    for f in files:
        assert any(fnmatch.fnmatch(f, pattern) for pattern in patterns), f


def test_membership_lists_state_changes_newest_first(
    api: Api, cluster_view: ClusterView, r: redis.Redis
) -> None:
    a = cluster_view.beat("a")
    b = cluster_view.beat("b")
    cluster_view.kill(b)
    changes = api.ok("GET", "/api/cluster/membership")
    stream = membership_changes(r, KEYS)
    assert [(c["uuid"], c["to_state"]) for c in changes] == [
        (c.uuid, c.to_state.value) for c in reversed(stream)
    ]
    assert [(c["uuid"], c["from_state"], c["to_state"]) for c in changes] == [
        (b, "active", "dead"),
        (b, None, "active"),
        (a, None, "active"),
    ]
    newest = changes[0]
    assert newest["reason"] == "test" and newest["at_ms"] == stream[-1].at_ms
    assert newest["at"].endswith("+00:00") and newest["last_seen_ms"] == stream[-1].last_seen_ms
    ids = [c["id"] for c in changes]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))), reverse=True)
    assert api.ok("GET", f"/api/cluster/membership?member={b}&limit=1") == changes[:1]
    assert [c["uuid"] for c in api.ok("GET", f"/api/cluster/membership?member={a}")] == [a]
    assert api.ok("GET", f"/api/cluster/membership?member={new_uuid()}") == []
    assert api.get("/api/cluster/membership?member=nope").status_code == 422
    assert api.get("/api/cluster/membership?limit=0").status_code == 422


def test_membership_pages_through_the_stream_and_skips_bad_entries(
    api: Api, cluster_view: ClusterView, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(membership, "PAGE", 2)  # many pages of a short stream
    first = cluster_view.beat("first")
    r.xadd(KEYS.membership, {b"m": b"not msgpack"})
    others = [cluster_view.beat(f"m{i}") for i in range(5)]
    changes = api.ok("GET", "/api/cluster/membership")
    assert [c["uuid"] for c in changes] == [*reversed(others), first]
    assert [c["uuid"] for c in api.ok("GET", f"/api/cluster/membership?member={first}")] == [first]
    assert [c["uuid"] for c in api.ok("GET", "/api/cluster/membership?limit=3")] == others[:1:-1]


def test_membership_needs_the_read_token(api: Api) -> None:
    assert api.get("/api/cluster/membership", token=None).status_code == 401
    assert api.get("/api/cluster/membership", token="wrong").status_code == 403
