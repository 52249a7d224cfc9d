"""``/api/cluster/jobs``: list and read jobs; run one now on a member (``qwc run``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from workers.commands.issue import DEFAULT_EXPIRES_S, issued_json, request_execute
from workers.jobs import job_json
from workers.manager.auth import require_read, require_write
from workers.manager.deps import JobIdPath, Res
from workers.manager.errors import ErrorBody
from workers.manager.models import Issued, Job, MemberId, RunRequest, Text
from workers.store import get_job, list_jobs

__all__ = ["issuer", "reader", "writer"]

reader = APIRouter(prefix="/api/cluster", tags=["jobs"], dependencies=[Depends(require_read)])
writer = APIRouter(prefix="/api/cluster", tags=["jobs"], dependencies=[Depends(require_write)])


def issuer(request: Request) -> str:
    """Who issues a command through the API (recorded on the command)."""
    host = request.client.host if request.client else "?"
    return f"qwc-manager:{host}"


@reader.get("/jobs", response_model=list[Job])
def jobs(
    res: Res,
    owner: Annotated[MemberId | None, Query(description="Only jobs of this member.")] = None,
    project: Annotated[Text | None, Query()] = None,
    group: Annotated[Text | None, Query(description="'' for jobs without a group.")] = None,
    name: Annotated[Text | None, Query()] = None,
) -> list[dict[str, Any]]:
    """Jobs by project, group and name; every filter is an exact match."""
    rows = list_jobs(res.store(), owner_uuid=owner, project=project, group_name=group, name=name)
    return [job_json(j) for j in rows]


@reader.get("/jobs/{job_id}", response_model=Job, responses={404: {"model": ErrorBody}})
def job(job_id: JobIdPath, res: Res) -> dict[str, Any]:
    """One job (404 when it does not exist)."""
    return job_json(get_job(res.store(), job_id))


@writer.post(
    "/jobs/{job_id}/run",
    status_code=202,
    response_model=Issued,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def run(job_id: JobIdPath, request: Request, res: Res, body: RunRequest | None = None) -> Any:
    """Run the job now (``qwc run``): an execute command to ``on``, or to the member
    ``remoteExecution.policy`` picks. Answers at once (202) with the command and the
    execution id; the member processes it within ``remoteExec.process.interval``.
    404: unknown job; 409: ``on`` is dead or unknown to the view, or no member may run it.
    """
    body = body or RunRequest.model_validate({})
    issued = request_execute(
        res.redis(),
        res.store(),
        res.settings,
        job_ref=job_id,
        on_uuid=body.on_uuid,
        expires_s=body.expires_s or DEFAULT_EXPIRES_S,
        issued_by=issuer(request),
    )
    return JSONResponse(issued_json(issued), status_code=202)
