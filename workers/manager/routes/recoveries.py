"""``/api/cluster/recoveries``: the history of execution recoveries (``qwc recoveries``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from workers.manager.auth import require_read
from workers.manager.deps import Res
from workers.manager.models import MemberId, Recovery
from workers.recovery.history import recovery_json
from workers.store import list_recoveries

__all__ = ["router"]

router = APIRouter(prefix="/api/cluster", tags=["recoveries"], dependencies=[Depends(require_read)])


@router.get("/recoveries", response_model=list[Recovery])
def recoveries(
    res: Res,
    member: Annotated[MemberId | None, Query(description="Only recoveries of this member.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Recovery proposals, newest first: outcome, executions marked ``incomplete``, retries
    started (each: execution, job, from, to, retry_execution, attempt, not_before_ms)."""
    rows = list_recoveries(res.store(), dead_uuid=member, limit=limit)
    return [recovery_json(r) for r in rows]
