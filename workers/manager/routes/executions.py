"""``/api/cluster/executions``: list executions, read one with its output; abort one
(``qwc abort``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from workers.commands.issue import DEFAULT_EXPIRES_S, abort_json, request_abort
from workers.jobs import execution_detail_json, execution_json
from workers.manager.auth import require_read, require_write
from workers.manager.deps import ExecutionIdPath, Res
from workers.manager.errors import ErrorBody
from workers.manager.models import (
    AbortOutcome,
    AbortRequest,
    Execution,
    ExecutionDetail,
    ExecutionStatus,
    MemberId,
    Text,
)
from workers.manager.routes.jobs import issuer
from workers.store import find_job, get_execution, list_executions

__all__ = ["reader", "writer"]

reader = APIRouter(prefix="/api/cluster", tags=["executions"], dependencies=[Depends(require_read)])
writer = APIRouter(
    prefix="/api/cluster", tags=["executions"], dependencies=[Depends(require_write)]
)


@reader.get("/executions", response_model=list[Execution])
def executions(
    res: Res,
    job: Annotated[
        Text | None,
        Query(
            description="Only executions of this job: its id (a deleted job's too) or its "
            "path PROJECT/[GROUP/]NAME; 404 when none."
        ),
    ] = None,
    member: Annotated[MemberId | None, Query(description="Only those on this member.")] = None,
    status: Annotated[list[ExecutionStatus] | None, Query(description="Repeatable.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Executions, newest first (the filters of ``qwc executions``), without their output."""
    store = res.store()
    job_id = find_job(store, job, include_deleted=True).id if job else None
    rows = list_executions(
        store, job_id=job_id, member_uuid=member, statuses=status or None, limit=limit
    )
    return [execution_json(e) for e in rows]


@reader.get(
    "/executions/{execution_id}",
    response_model=ExecutionDetail,
    responses={404: {"model": ErrorBody}},
)
def execution(execution_id: ExecutionIdPath, res: Res) -> dict[str, Any]:
    """One execution with its output (``qwc executions show``; 404 when it does not exist).
    ``output`` is what it printed, up to ``qwcontrol.executions.output.maxBytes`` of it:
    when it printed more, its head and its tail, joined by a line saying how many bytes
    were dropped."""
    return execution_detail_json(get_execution(res.store(), execution_id))


@writer.post(
    "/executions/{execution_id}/abort",
    response_model=AbortOutcome,
    responses={404: {"model": ErrorBody}, 409: {"model": AbortOutcome}},
)
def abort(
    execution_id: ExecutionIdPath, request: Request, res: Res, body: AbortRequest | None = None
) -> Any:
    """Abort the execution (``qwc abort``). ``outcome``: ``sent`` (an abort command to its
    member), ``applied`` (its member is dead: aborted in the store), ``cancelled`` (its
    execute command was not processed yet), or ``ended`` (it had ended: nothing done, 409).
    404: neither an execution nor a pending execute command has that id."""
    result = request_abort(
        res.redis(),
        res.store(),
        res.settings,
        execution_id=execution_id,
        expires_s=(body.expires_s if body else None) or DEFAULT_EXPIRES_S,
        issued_by=issuer(request),
    )
    return JSONResponse(abort_json(result), status_code=409 if result.outcome == "ended" else 200)
