"""The compatible calls of the product this replaces, under ``/api/{v}/scheduler``.

``PUT …/takeover`` moves jobs to this manager's member (``qwcontrol.server.uuid``) as that
product's server takes them over itself; a manager that is no member spreads them over
the active, non-passive members. ``GET …/jobs``: the jobs this manager's member owns (404
when it has none configured); ``GET …/server/{uuid}/jobs``: the jobs of that member.
Versions below 14 answer 400. The body and answer shapes: ``workers.manager.compat``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from workers.bus.streams import server_time_ms
from workers.manager.auth import require_read, require_write
from workers.manager.compat import (
    TAKEOVER_BODY_SCHEMA,
    BadRequest,
    CompatTakeover,
    compat_job,
    parse_takeover_body,
    version_problem,
    versioned_answer,
)
from workers.manager.deps import MemberPath, Res
from workers.manager.errors import ApiError, ErrorBody
from workers.manager.models import CompatJob, TakeoverAnswer
from workers.manager.resources import Resources
from workers.manager.routes.members import known_member
from workers.store import list_jobs
from workers.takeover.manual import manual_takeover

__all__ = ["reader", "writer"]

PREFIX = "/api/{v}/scheduler"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
}
reader = APIRouter(prefix=PREFIX, tags=["compatible"], dependencies=[Depends(require_read)])
writer = APIRouter(prefix=PREFIX, tags=["compatible"], dependencies=[Depends(require_write)])


def api_version(v: Annotated[int, Path(description="API version, 14 or later.")]) -> int:
    """The API version of the path; 400 below 14."""
    problem = version_problem(v)
    if problem is not None:
        raise ApiError(400, problem, code="api.error.api-version.unsupported")
    return v


Version = Annotated[int, Depends(api_version)]


def _take_over(res: Resources, asked: CompatTakeover) -> dict[str, Any]:
    client = res.redis()
    return manual_takeover(
        client,
        res.store(),
        res.settings,
        from_uuid=asked.from_uuid,
        to_uuid=res.settings.server_uuid,
        project=asked.project,
        job_ids=asked.job_ids,
        now_ms=server_time_ms(client),
    )


@writer.put(
    "/takeover",
    response_model=TakeoverAnswer,
    responses={**ERRORS, 409: {"model": TakeoverAnswer}},
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": TAKEOVER_BODY_SCHEMA}}}
    },
)
async def takeover(request: Request, v: Version, res: Res) -> Any:
    """Take over the jobs of ``server.uuid``, of every member (``server.all``), of
    ``job.id`` or (v >= 32) of ``jobs``, narrowed by ``project``. Successful jobs carry
    ``previous-owner`` from v 17. 400: no server and no job in the body; 404: unknown member
    or job; 409: ``success`` false (no member could receive them)."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
        asked = parse_takeover_body(body, v)
    except (ValueError, RecursionError) as exc:  # BadRequest, or not JSON
        message = str(exc) if isinstance(exc, BadRequest) else "the request body is not JSON"
        raise ApiError(400, message) from None
    answer = await run_in_threadpool(_take_over, res, asked)
    status = 200 if answer["success"] else 409
    return JSONResponse(versioned_answer(answer, v, asked.project), status_code=status)


@reader.get("/jobs", response_model=list[CompatJob], responses=ERRORS)
def my_jobs(v: Version, res: Res) -> list[dict[str, Any]]:
    """The jobs this manager's member (``qwcontrol.server.uuid``) owns; 404 when the
    manager has no member configured."""
    me = res.settings.server_uuid
    if me is None:
        raise ApiError(404, "this manager is no member: qwcontrol.server.uuid is not set")
    return [compat_job(j, me) for j in list_jobs(res.store(), owner_uuid=me)]


@reader.get("/server/{uuid}/jobs", response_model=list[CompatJob], responses=ERRORS)
def server_jobs(v: Version, uuid: MemberPath, res: Res) -> list[dict[str, Any]]:
    """The jobs member ``uuid`` owns; 404 when the member is unknown."""
    known_member(res, uuid)
    me = res.settings.server_uuid
    return [compat_job(j, me) for j in list_jobs(res.store(), owner_uuid=uuid)]
