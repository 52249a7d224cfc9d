"""Auth of the manager: no mutating call succeeds without the write token (every such route
of the app is walked), reading needs a token unless opened, 401/403 are JSON, tokens are
compared in constant time and never logged."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
import redis
from fastapi.routing import APIRoute

from tests.cluster import new_uuid
from tests.manager_fixtures import KEYS, READ_TOKEN, WRITE_TOKEN, Api, ClusterView, add_job
from workers.manager.app import ROUTERS
from workers.manager.auth import (
    MISSING,
    WRONG,
    _digest,
    auth_problem,
    require_read,
    require_write,
)
from workers.store import Store, list_commands, list_jobs, list_takeovers

PATH_VALUES = {"v": "14", "uuid": "0e5f6c3a-8d1b-4c2e-9f70-1a2b3c4d5e6f", "action": "disable"}


def every_route() -> set[tuple[str, str]]:
    """(method, path template) of every route of the app's routers."""
    return {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def routes(api: Api, *, mutating: bool) -> list[tuple[str, str]]:
    """(method, concrete path) of every API route, mutating (not GET) or reading."""
    found = []
    for method, template in sorted(every_route()):
        path = re.sub(r"{(\w+)}", lambda m: PATH_VALUES.get(m.group(1), "some-id"), template)
        if (method != "GET") == mutating:
            found.append((method, path))
    return found


def test_the_routers_are_all_the_app_serves(api: Api) -> None:
    doc = api.get("/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == every_route() and len(documented) == 28
    for router in ROUTERS:  # each route carries exactly one of the two checks
        for route in router.routes:
            assert isinstance(route, APIRoute)
            calls = {d.call for d in route.dependant.dependencies}
            wanted = require_read if route.methods == {"GET"} else require_write
            assert wanted in calls and len(calls & {require_read, require_write}) == 1


def test_the_walk_covers_every_mutating_route(api: Api) -> None:
    assert set(routes(api, mutating=True)) == {
        ("POST", "/api/cluster/jobs"),
        ("PUT", "/api/cluster/jobs/some-id"),
        ("PATCH", "/api/cluster/jobs/some-id"),
        ("DELETE", "/api/cluster/jobs/some-id"),
        ("DELETE", "/api/14/job/some-id"),
        ("POST", "/api/14/job/some-id/schedule/disable"),
        ("POST", "/api/14/job/some-id/execution/disable"),
        ("POST", "/api/14/project/some-id/jobs/import"),
        ("POST", "/api/cluster/jobs/some-id/run"),
        ("POST", "/api/cluster/executions/some-id/abort"),
        ("POST", "/api/cluster/takeovers"),
        ("POST", "/api/cluster/guard/release"),
        ("PUT", "/api/14/scheduler/takeover"),
    }


def test_no_mutating_call_succeeds_without_the_token(
    make_api: Callable[..., Api],
    cluster_view: ClusterView,
    store: Store,
    r: redis.Redis,
) -> None:
    live = cluster_view.beat("live")
    dead = cluster_view.beat("dead")
    job = add_job(store, dead, "j")
    cluster_view.kill(dead)
    body = {"from": dead, "server": {"uuid": dead}, "on": live}
    api = make_api()
    unset = make_api(manager_token=None)  # no write token configured: always refused
    calls = routes(api, mutating=True)
    for method, path in calls:
        path = path.replace("some-id", job)
        missing = api.request(method, path, token=None, json=body)
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.json()["message"] == MISSING
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        for token in ("wrong", READ_TOKEN, WRITE_TOKEN + "x", WRITE_TOKEN[:-1]):
            wrong = api.request(method, path, token=token, json=body)
            assert wrong.status_code == 403, (method, path, token, wrong.text)
            assert wrong.json() == {
                "error": True,
                "errorCode": "api.error.forbidden",
                "message": WRONG,
                **({"apiversion": 14} if "/14/" in path else {}),
            }
        for token in (None, WRITE_TOKEN):
            refused = unset.request(method, path, token=token, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert "set qwcontrol.manager.token" in refused.json()["message"]
    assert {j.owner_uuid for j in list_jobs(store)} == {dead}
    assert list_takeovers(store) == [] and list_commands(store) == []
    assert r.get(KEYS.takeover_released) is None and r.xlen(KEYS.commands(live)) == 0
    # and the same calls with the token do change the cluster
    api.ok("POST", "/api/cluster/guard/release")
    assert r.get(KEYS.takeover_released) is not None


def test_reading_needs_a_token_unless_opened(make_api: Callable[..., Api]) -> None:
    api = make_api()
    reads = routes(api, mutating=False)
    assert ("GET", "/metrics") in reads and len(reads) >= 12
    for _, path in reads:
        missing = api.get(path, token=None)
        assert missing.status_code == 401, (path, missing.text)
        assert api.get(path, token="wrong").status_code == 403, path
        for token in (READ_TOKEN, WRITE_TOKEN):
            assert api.get(path, token=token).status_code not in (401, 403), (path, token)
    opened = make_api(manager_read_open=True, manager_read_token=None)
    for _, path in reads:
        assert opened.get(path, token=None).status_code not in (401, 403), path
    assert opened.post("/api/cluster/guard/release", token=None).status_code == 401
    closed = make_api(manager_token=None, manager_read_token=None)
    refused = closed.get("/api/cluster/members", token=None)
    assert refused.status_code == 403
    assert "qwcontrol.manager.readOpen=true" in refused.json()["message"]


def test_write_token_alone_opens_reads_too(make_api: Callable[..., Api]) -> None:
    api = make_api(manager_read_token=None)
    assert api.get("/api/cluster/jobs", token=WRITE_TOKEN).status_code == 200
    assert api.get("/api/cluster/jobs", token=READ_TOKEN).status_code == 403


def test_the_openapi_document_is_open(make_api: Callable[..., Api]) -> None:
    api = make_api(manager_token=None, manager_read_token=None)
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert api.get(path, token=None).status_code == 200, path
    doc = api.get("/openapi.json", token=None).json()
    assert doc["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "qwcontrol.manager.token (any call) or qwcontrol.manager.readToken (GET).",
    }
    secured = [op for ops in doc["paths"].values() for op in ops.values()]
    assert all(op.get("security") == [{"token": []}] for op in secured)


def test_tokens_are_never_logged(
    api: Api, cluster_view: ClusterView, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cluster_view.beat("live")
    dead = cluster_view.beat("dead")
    add_job(store, dead, "j")
    cluster_view.kill(dead)
    guess = "guessed-" + new_uuid()
    api.post("/api/cluster/takeovers", token=guess, json={"from": dead})
    api.get("/api/cluster/members", token=guess)
    api.get("/metrics", token=READ_TOKEN)
    api.ok("POST", "/api/cluster/takeovers", json={"from": dead}, token=WRITE_TOKEN)
    assert "401" in caplog.text or "403" in caplog.text  # refusals are logged ...
    for secret in (guess, READ_TOKEN, WRITE_TOKEN):
        assert secret not in caplog.text  # ... without the token


def test_auth_problem_decides() -> None:
    accepted = [_digest("a"), _digest("b")]
    assert auth_problem("a", accepted, open_=False, unset="u") is None
    assert auth_problem("b", accepted, open_=False, unset="u") is None
    assert auth_problem("c", accepted, open_=False, unset="u") == (403, WRONG)
    assert auth_problem("", accepted, open_=False, unset="u") == (401, MISSING)
    assert auth_problem(None, accepted, open_=False, unset="u") == (401, MISSING)
    assert auth_problem(None, [], open_=False, unset="u") == (403, "u")
    assert auth_problem("a", [], open_=False, unset="u") == (403, "u")
    assert auth_problem(None, [], open_=True, unset="u") is None
