"""Helpers of the manager's tests: the app on the test's real Redis and store, a sync
client over httpx's ``ASGITransport``, and a cluster view made through the liveness code.

Members appear in the view as they do in production: a ``HeartbeatProducer`` publishes a
heartbeat and one ``LivenessWorker.step`` observes it (active). ``kill`` applies the
liveness transition to ``dead`` (``view.apply_transitions``), so no test waits for
``considerDead`` to pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI

from producers.heartbeat import HeartbeatProducer
from schemas.keys import Keys
from schemas.messages import MemberState
from schemas.settings import Settings
from tests.cluster import new_uuid
from workers.liveness import view
from workers.liveness.rules import Transition
from workers.liveness.worker import LivenessWorker
from workers.manager.app import create_app
from workers.store import Store, create_job, insert_execution

__all__ = [
    "KEYS",
    "READ_TOKEN",
    "WRITE_TOKEN",
    "Api",
    "ClusterView",
    "add_execution",
    "add_job",
    "api",
    "cluster_view",
    "make_api",
    "manager_settings",
]

KEYS = Keys()
WRITE_TOKEN = "write-token-for-tests"
READ_TOKEN = "read-token-for-tests"
BASE_URL = "http://manager.test"


def manager_settings(redis_url: str, db_url: str, home: Path, **overrides: Any) -> Settings:
    """Settings of a manager on the test's servers, with both tokens (overridable)."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": db_url,
        "home_dir": home,
        "manager_token": WRITE_TOKEN,
        "manager_read_token": READ_TOKEN,
    }
    return Settings(**(values | overrides))


@dataclass
class Api:
    """A sync face of ``httpx.AsyncClient(transport=ASGITransport(app))``: one event loop
    (the portal's thread) for every call of a test. ``token`` is sent as a bearer token
    unless a call passes its own (None: no Authorization header)."""

    app: FastAPI
    settings: Settings
    portal: BlockingPortal
    token: str | None = WRITE_TOKEN
    client: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)

    def request(
        self, method: str, url: str, *, token: str | bool | None = True, **kw: Any
    ) -> httpx.Response:
        bearer = self.token if token is True else token
        headers = dict(kw.pop("headers", {}))
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        call = partial(self.client.request, method, url, headers=headers, **kw)
        return self.portal.call(call)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)

    def ok(self, method: str, url: str, status: int = 200, **kw: Any) -> Any:
        """The JSON of a call that must answer ``status``."""
        response = self.request(method, url, **kw)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json()


@pytest.fixture
def make_api(
    r: redis.Redis, store: Store, redis_url: str, db_url: str, tmp_path: Path
) -> Iterator[Callable[..., Api]]:
    """``make_api(**settings)``: an ``Api`` on an app using the test's Redis client and store
    (flushed / fresh per test); keyword arguments override the settings."""
    with start_blocking_portal() as portal:
        made: list[Api] = []

        def make(**overrides: Any) -> Api:
            settings = manager_settings(redis_url, db_url, tmp_path / "home", **overrides)
            api = Api(create_app(settings, client=r, store=store), settings, portal)
            made.append(api)
            return api

        try:
            yield make
        finally:
            for api in made:
                portal.call(api.client.aclose)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """An ``Api`` with the default test settings (both tokens set; writes use the write one)."""
    return make_api()


@dataclass
class ClusterView:
    """Members in the liveness view of the test's Redis (see the module docstring)."""

    r: redis.Redis
    store: Store
    settings: Settings

    def beat(
        self,
        name: str,
        uuid: str | None = None,
        *,
        tags: tuple[str, ...] = (),
        passive: bool = False,
        running: tuple[str, ...] = (),
    ) -> str:
        """Publish one heartbeat of member ``name`` and let the liveness worker see it."""
        producer = HeartbeatProducer(
            self.r, uuid=uuid or new_uuid(), name=name, interval_s=1, tags=tags, passive=passive
        )
        producer.set_running(running)
        assert producer.beat() is not None
        self.observe()
        return producer.uuid

    def observe(self) -> None:
        """One pass of a liveness worker: new heartbeats recorded, members made active."""
        LivenessWorker(self.r, self.store, self.settings, consumer="test").step()

    def kill(self, uuid: str) -> None:
        """Turn ``uuid`` dead in the view, as the liveness worker does after considerDead."""
        snap = view.read_snapshot(self.r, KEYS)
        change = Transition(uuid, snap.states[uuid], MemberState.DEAD, snap.seen_ms[uuid])
        applied = view.apply_transitions(
            self.r, KEYS, [change], now_ms=snap.now_ms, names={}, reason="test"
        )
        assert applied, f"{uuid} was not turned dead"

    def state(self, uuid: str) -> str | None:
        s = view.read_snapshot(self.r, KEYS).states.get(uuid)
        return None if s is None else s.value


def add_job(
    store: Store,
    owner: str,
    name: str,
    *,
    project: str = "p",
    group: str = "g",
    schedule: str | None = None,
) -> str:
    """Create job ``project/group/name`` owned by ``owner``; its id."""
    return create_job(
        store,
        project=project,
        group_name=group,
        name=name,
        command=["true"],
        schedule=schedule,
        modified_by=owner,
        now_ms=int(time.time() * 1000),
    ).id


def add_execution(store: Store, job_id: str, member: str, status: str = "running") -> str:
    """Insert an execution of ``job_id`` on ``member``; its id."""
    now_ms = int(time.time() * 1000)
    return insert_execution(
        store,
        job_id=job_id,
        member_uuid=member,
        trigger="schedule",
        fire_ms=now_ms,
        now_ms=now_ms,
        status=status,
    )


@pytest.fixture
def cluster_view(r: redis.Redis, store: Store, api: Api) -> ClusterView:
    """Members made to appear in the view of the ``api``'s Redis."""
    return ClusterView(r, store, api.settings)
