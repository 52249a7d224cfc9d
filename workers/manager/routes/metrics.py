"""``/metrics``: the Prometheus text exposition of ``workers.manager.metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workers.manager.auth import require_read

__all__ = ["router"]

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_read)])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics, read from Redis and the store at each scrape (see
    docs/manager.md); a source that does not answer shows ``qwc_source_up`` 0."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
