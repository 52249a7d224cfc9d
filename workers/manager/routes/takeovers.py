"""``/api/cluster/takeovers`` and ``/api/cluster/guard``: the takeover history, a manual
takeover (``qwc takeover``), the mass-failure guard and its release (``qwc takeover
release``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from workers.bus.streams import server_time_ms
from workers.liveness.listing import iso_utc
from workers.manager.auth import require_read, require_write
from workers.manager.deps import Res
from workers.manager.errors import ErrorBody
from workers.manager.models import Guard, MemberId, Released, Takeover, TakeoverAnswer
from workers.manager.models import TakeoverRequest as TakeoverBody
from workers.takeover.guard import guard_state, release_guard
from workers.takeover.history import takeover_history
from workers.takeover.manual import manual_takeover

__all__ = ["reader", "writer"]

reader = APIRouter(prefix="/api/cluster", tags=["takeovers"], dependencies=[Depends(require_read)])
writer = APIRouter(prefix="/api/cluster", tags=["takeovers"], dependencies=[Depends(require_write)])


@reader.get("/takeovers", response_model=list[Takeover])
def takeovers(
    res: Res,
    member: Annotated[MemberId | None, Query(description="Only takeovers of this member.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The takeover history, newest first: proposals and their outcome (``qwc takeovers``)."""
    return takeover_history(res.store(), dead_uuid=member, limit=limit)


@writer.post(
    "/takeovers",
    response_model=TakeoverAnswer,
    responses={
        404: {"model": ErrorBody},
        409: {
            "model": TakeoverAnswer,
            "description": "No member could receive the jobs "
            "(success false), or the destination is dead or the source itself.",
        },
    },
)
def take_over(body: TakeoverBody, res: Res) -> Any:
    """Take over jobs by hand (``qwc takeover``): the jobs of ``from`` (or of every member:
    ``all``), narrowed by ``project`` and ``jobs``, to ``to`` or spread over the active,
    non-passive members; one transaction, each job's owner epoch + 1. The answer has the
    shape of ``PUT /api/14/scheduler/takeover``. 404: unknown member or job; 409:
    ``success`` false (no member could receive them), or a dead ``to``.
    """
    client = res.redis()
    answer = manual_takeover(
        client,
        res.store(),
        res.settings,
        from_uuid=body.from_uuid,
        to_uuid=body.to_uuid,
        project=body.project,
        job_ids=body.jobs,
        now_ms=server_time_ms(client),
    )
    return JSONResponse(answer, status_code=200 if answer["success"] else 409)


@reader.get("/guard", response_model=Guard)
def guard(res: Res) -> dict[str, Any]:
    """The mass-failure guard: the takeovers it holds (proposal id -> why) and its last
    release."""
    state = guard_state(res.redis(), res.keys)
    return {
        "held": state.held,
        "released_at": iso_utc(state.released_ms),
        "released_ms": state.released_ms,
    }


@writer.post("/guard/release", response_model=Released)
def release(res: Res) -> dict[str, Any]:
    """Let the takeovers held by the mass-failure guard proceed (``qwc takeover release``):
    proposals made before now are committed at the workers' next check."""
    done = release_guard(res.redis(), res.keys)
    return {
        "released_at": iso_utc(done.released_ms),
        "released_ms": done.released_ms,
        "held": done.held,
    }
