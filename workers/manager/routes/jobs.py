"""``/api/cluster/jobs``: list and read jobs; create, replace, patch and delete them
(``qwc jobs add|edit|delete|enable|disable``, through ``workers.jobops``); run one now on a
member (``qwc run``).

A job's body is the object of an import file's entry (``workers.jobs.JobSpec``: name, one
executor, schedule, time_zone, …, ``as``/``owner``: a member's UUID or name). Creating a
job makes ``as`` its owner, else the manager's member (``qwcontrol.server.uuid``), else the
active member owning the fewest jobs. A modification goes through ``as``, else the
manager's member, else keeps the owner; ``owner_epoch`` + 1 either way. ``{job_id}`` is a
job's id."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from workers.commands.issue import (
    DEFAULT_EXPIRES_S,
    abort_json,
    default_issuer,
    issued_json,
    request_abort,
    request_execute,
)
from workers.jobops import create_from_spec, delete_by_ref, edit_by_ref, modifier, new_job_owners
from workers.jobs import JobSpec, changed_columns, job_json, parse_spec
from workers.manager.auth import require_read, require_write
from workers.manager.deps import JobIdPath, Res
from workers.manager.errors import ApiError, ErrorBody
from workers.manager.models import (
    Issued,
    Job,
    JobCreated,
    JobDeleted,
    MemberId,
    RunRequest,
    Text,
)
from workers.manager.resources import Resources
from workers.store import find_job, get_job, list_jobs, update_job

__all__ = ["JOB_BODY_SCHEMA", "issuer", "reader", "writer"]

reader = APIRouter(prefix="/api/cluster", tags=["jobs"], dependencies=[Depends(require_read)])
writer = APIRouter(prefix="/api/cluster", tags=["jobs"], dependencies=[Depends(require_write)])

JOB_BODY_SCHEMA: dict[str, Any] = JobSpec.model_json_schema(by_alias=False)
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}
JobBody = Annotated[
    dict[str, Any],
    Body(
        description="A job, as an entry of an import file (docs/jobs.md): name, exactly one "
        "executor (command, shell, http, python), schedule, time_zone, … and `as` (a "
        "member's UUID or name).",
        examples=[{"name": "backup", "shell": "pg_dump app | gzip > /b/app.gz",
                   "schedule": "0 2 * * *", "time_zone": "Europe/Paris", "as": "node-1"}],
    ),
]  # fmt: skip


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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


@writer.post("/jobs", status_code=201, response_model=JobCreated, responses=ERRORS)
def create(body: JobBody, res: Res) -> dict[str, Any]:
    """Create a job (``qwc jobs add``). 409: a job has that project/group/name or id (the
    message names it); 422: an invalid field (named), or an unknown or ambiguous ``as``, or
    no owner can be found."""
    spec = parse_spec(body)
    store = res.store()
    (owner,) = new_job_owners(store, [spec.owner], res.settings.server_uuid)
    job = create_from_spec(store, spec, owner.uuid, _now_ms())
    return {**job_json(job), "owner_reason": owner.why}


@writer.put("/jobs/{job_id}", response_model=Job, responses=ERRORS)
def replace(job_id: JobIdPath, body: JobBody, res: Res) -> dict[str, Any]:
    """Replace a job's definition by ``body`` (a whole job: what it omits gets its
    default). The id and the history stay. 404: unknown job; 409: its new
    project/group/name is taken; 422: an invalid field."""
    store = res.store()
    job = find_job(store, job_id)
    spec = parse_spec({**body, "name": body.get("name", job.name)})
    through = modifier(store, spec.owner, res.settings.server_uuid)
    columns = changed_columns(job, spec)
    return job_json(update_job(store, job.id, modified_by=through, now_ms=_now_ms(), **columns))


@writer.patch("/jobs/{job_id}", response_model=Job, responses=ERRORS)
def patch(job_id: JobIdPath, body: JobBody, res: Res) -> dict[str, Any]:
    """Change some of a job's fields (``qwc jobs edit``): those in ``body`` replace the
    job's (an executor replaces its executor; ``null`` clears ``timeout``, ``time_zone``,
    ``schedule``, ``misfire_grace``); ``schedule_enabled`` (or ``enabled``) and
    ``execution_enabled`` enable or disable it; ``as`` alone moves it to that member.
    404, 409, 422 as for PUT."""
    store = res.store()
    changes = dict(body)
    ref = changes.pop("as", None) or changes.pop("owner", None)
    if ref is not None and not isinstance(ref, str):
        raise ApiError(422, "field 'as': a member's UUID or name")
    through = modifier(store, ref, res.settings.server_uuid)
    _, job = edit_by_ref(store, job_id, changes, modifier=through, now_ms=_now_ms())
    return job_json(job)


def _delete(res: Resources, job_id: str, abort: bool) -> dict[str, Any]:
    store = res.store()
    deleted = delete_by_ref(store, job_id, modifier=res.settings.server_uuid, now_ms=_now_ms())
    aborts = [
        abort_json(
            request_abort(
                res.redis(), store, res.settings, execution_id=e, issued_by=default_issuer()
            )
        )
        for e in (deleted.running if abort else ())
    ]
    return {
        "job": job_json(deleted.job),
        "aborted_waiting": list(deleted.aborted),
        "running": list(deleted.running),
        "aborts": aborts,
    }


@writer.delete("/jobs/{job_id}", response_model=JobDeleted, responses={404: {"model": ErrorBody}})
async def delete(
    job_id: JobIdPath,
    res: Res,
    abort: Annotated[bool, Query(description="Abort its running executions too.")] = False,
) -> dict[str, Any]:
    """Delete a job (``qwc jobs delete``): it is fired, run and retried no more, its
    executions that had not started are aborted, its running ones finish (or are aborted
    with ``abort=true``, as ``POST …/executions/{id}/abort`` does), and its executions stay
    listed until retention removes them. 404: unknown job."""
    return await run_in_threadpool(_delete, res, job_id, abort)
