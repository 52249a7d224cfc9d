"""The manager's ASGI app: ``create_app(settings)``.

One app serves the JSON API under ``/api/cluster``, the compatible calls under
``/api/{v}/scheduler``, Prometheus metrics at ``/metrics``, the OpenAPI document at
``/openapi.json`` (pages ``/docs`` and ``/redoc``) and the web page at ``/ui/`` (``/``
sends the browser there). The Redis client and the store are
opened on first use and closed when the app shuts down (``Resources``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from schemas import __version__
from schemas.settings import Settings
from workers.manager.auth import TokenCheck
from workers.manager.body_limit import BodyLimit
from workers.manager.errors import install_handlers
from workers.manager.metrics import ClusterCollector
from workers.manager.resources import Resources
from workers.manager.routes import (
    compat,
    compat_jobs,
    executions,
    jobs,
    members,
    membership,
    notifications,
    page,
    recoveries,
    takeovers,
)
from workers.manager.routes import metrics as metrics_routes
from workers.store import Store

__all__ = ["ROUTERS", "create_app"]

# Every router of the API (each carries its auth: require_read or require_write); the web
# page's files (``page.mount_page``) carry no data and are served without a token.
ROUTERS = (
    members.router,
    membership.router,
    jobs.reader,
    jobs.writer,
    executions.reader,
    executions.writer,
    takeovers.reader,
    takeovers.writer,
    recoveries.router,
    notifications.router,
    compat.reader,
    compat.writer,
    compat_jobs.writer,
    metrics_routes.router,
)

DESCRIPTION = """The Cluster Manager of QW Control cluster mode: the cluster view, jobs,
executions, takeovers and recoveries, manual takeover, remote execute / abort, the
mass-failure guard, and the compatible calls of the product it replaces.

Mutating calls need `Authorization: Bearer <qwcontrol.manager.token>`; reading calls need
that token or `qwcontrol.manager.readToken`, unless `qwcontrol.manager.readOpen=true`.
A request body over `qwcontrol.manager.maxBodyBytes` (1 MiB by default) is refused with 413
before it is read, before authentication.

Errors answer `{"error": true, "errorCode": "...", "message": "..."}`."""


def create_app(
    settings: Settings, *, client: redis.Redis | None = None, store: Store | None = None
) -> FastAPI:
    """The manager's app on ``settings``. A ``client`` or ``store`` given is used and left
    open; otherwise they are opened on first use and closed at shutdown."""
    resources = Resources(settings, client=client, store=store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            resources.close()

    app = FastAPI(
        title="QW Control Cluster Manager",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.resources = resources
    app.state.tokens = TokenCheck.from_settings(settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(resources))
    app.state.registry = registry
    install_handlers(app)
    # before routing and auth, so no body over the limit is ever read (see body_limit)
    app.add_middleware(BodyLimit, max_body_bytes=settings.manager_max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    page.mount_page(app)
    return app
