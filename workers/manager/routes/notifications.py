"""``/api/cluster/notifications/failed``: the webhook deliveries given up (``qwc
notifications failed``); the web page shows them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from workers.manager.auth import require_read
from workers.manager.deps import Res
from workers.manager.models import Text
from workers.notify.failed import list_failed

__all__ = ["FailedDelivery", "router"]

router = APIRouter(
    prefix="/api/cluster", tags=["notifications"], dependencies=[Depends(require_read)]
)


class FailedDelivery(BaseModel):
    """A webhook delivery given up, as ``qwc notifications failed --json`` shows it."""

    id: str = Field(description="its entry on the failed list (`qwc notifications retry ID`)")
    receiver: str
    event_id: str
    event_type: str
    attempts: int
    first_attempt_at: str
    first_attempt_ms: int
    failed_at: str
    failed_at_ms: int
    error: str = Field(description="the last attempt's error")
    status: int | None = Field(description="the last HTTP status; None: no answer")
    payload: Any = Field(description="the event as it was sent (docs/notifications.md)")


@router.get("/notifications/failed", response_model=list[FailedDelivery])
def failed(
    res: Res,
    receiver: Annotated[Text | None, Query(description="Only deliveries to this receiver.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Webhook deliveries given up, newest first: the receiver kept failing until
    ``qwcontrol.notifications.retry.horizon``, or refused the event (3xx, 4xx)."""
    return list_failed(res.redis(), res.keys, limit=limit, receiver=receiver)
