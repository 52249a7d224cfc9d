"""The job calls of the product this replaces, as its scripts make them (v >= 14):

* ``DELETE /api/{v}/job/{id}``: 204 (``qwc jobs delete``: running executions finish);
* ``POST /api/{v}/job/{id}/schedule/enable|disable`` and ``…/execution/enable|disable``:
  ``{"success": true}`` (Rundeck's ``scheduleEnabled`` / ``executionEnabled``);
* ``POST /api/{v}/project/{project}/jobs/import``: the request body is Rundeck's job YAML
  (``Content-Type: application/yaml``; its JSON form is read too), every job into
  ``project``; ``dupeOption`` ``create`` (the default: a job that exists fails),
  ``skip`` or ``update``; ``uuidOption`` ``preserve`` (default) or ``remove``. The answer
  lists each job under ``succeeded``, ``failed`` or ``skipped`` (``index`` from 1), plus
  ``warnings``: the fields a job lost (node filters, …). All or nothing: when one job
  fails, none is imported (they are all listed, the others under ``succeeded`` only once
  it is written).

Modifications go through the manager's member (``qwcontrol.server.uuid``), as the
product's server makes itself the owner of what it modifies; a manager that is no member
keeps each job's owner (its epoch + 1 all the same). Same auth as every mutating call.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from schemas.errors import ConflictError
from workers.jobops import OwnerError, delete_by_ref, existing_job, import_specs, set_enabled
from workers.jobs import JobSpec, SpecError, parse_import
from workers.jobs.spec import parse_import_text
from workers.manager.auth import require_write
from workers.manager.deps import JobIdPath, Res
from workers.manager.errors import ApiError, ErrorBody
from workers.manager.resources import Resources
from workers.manager.routes.compat import Version
from workers.store import JobRow

__all__ = ["writer"]

log = logging.getLogger(__name__)

writer = APIRouter(prefix="/api/{v}", tags=["compatible"], dependencies=[Depends(require_write)])
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}}
SUCCESS = {"success": True}
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPES = ("application/json", "text/json")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@writer.delete("/job/{job_id}", status_code=204, responses=ERRORS)
def delete_job(v: Version, job_id: JobIdPath, res: Res) -> Response:
    """Delete a job: 204. Its running executions finish; its history stays until
    retention. 404: unknown job."""
    delete_by_ref(res.store(), job_id, modifier=res.settings.server_uuid, now_ms=_now_ms())
    return Response(status_code=204)


Toggle = Annotated[Literal["enable", "disable"], Path(description="enable or disable")]


@writer.post("/job/{job_id}/schedule/{action}", responses=ERRORS)
def toggle_schedule(v: Version, job_id: JobIdPath, action: Toggle, res: Res) -> dict[str, Any]:
    """Enable or disable the job's schedule: ``{"success": true}``. 404: unknown job."""
    _toggle(res, job_id, schedule=action == "enable")
    return SUCCESS


@writer.post("/job/{job_id}/execution/{action}", responses=ERRORS)
def toggle_execution(v: Version, job_id: JobIdPath, action: Toggle, res: Res) -> dict[str, Any]:
    """Enable or disable the job's executions (disabled: neither fired nor run):
    ``{"success": true}``. 404: unknown job."""
    _toggle(res, job_id, execution=action == "enable")
    return SUCCESS


def _toggle(
    res: Resources, job_id: str, *, schedule: bool | None = None, execution: bool | None = None
) -> None:
    set_enabled(
        res.store(),
        job_id,
        schedule=schedule,
        execution=execution,
        modifier=res.settings.server_uuid,
        now_ms=_now_ms(),
    )


def _entries(raw: bytes, content_type: str, fileformat: str | None) -> list[Any]:
    """The job entries of an import body; ``ApiError`` 400/415 when it cannot be read."""
    kind = (fileformat or "").lower()
    media = content_type.split(";")[0].strip().lower()
    if kind == "xml" or (not kind and media in ("application/xml", "text/xml")):
        raise ApiError(400, "job definitions in XML are not read here: send the YAML")
    if not kind and media not in (*YAML_TYPES, *JSON_TYPES):
        raise ApiError(
            415,
            f"send the job definitions as the request body with Content-Type: application/yaml "
            f"(or application/json), not {media or 'nothing'}",
        )
    try:
        return parse_import_text(raw.decode("utf-8"), "request body")
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except SpecError as exc:
        raise ApiError(400, "; ".join(exc.problems)) from None


def _item(index: int, job: JobRow | None, entry: Any, error: str | None = None) -> dict[str, Any]:
    """One job of the import answer, as the product lists it (``index`` from 1)."""
    source = entry if isinstance(entry, dict) else {}
    item: dict[str, Any] = {
        "index": index + 1,
        "id": job.id if job else None,
        "name": job.name if job else source.get("name"),
        "group": (job.group_name if job else source.get("group")) or None,
        "project": job.project if job else source.get("project"),
    }
    if job is not None:
        item["href"] = f"/api/cluster/jobs/{job.id}"
    if error is not None:
        item["error"] = error
    return item


def _import(
    res: Resources, project: str, entries: list[Any], dupe: str, uuids: str
) -> dict[str, Any]:
    """Convert every entry (each one's problems listed), then import them all or none."""
    answer: dict[str, Any] = {"succeeded": [], "failed": [], "skipped": [], "warnings": []}
    converted: list[tuple[int, Any, JobSpec]] = []
    for index, entry in enumerate(entries):
        if uuids == "remove" and isinstance(entry, dict):
            entry = {k: v for k, v in entry.items() if k not in ("uuid", "id")}
        try:
            imported = parse_import(
                [entry], f"job [{index + 1}]", project=project, force_project=True
            )
        except SpecError as exc:
            answer["failed"].append(_item(index, None, entry, "; ".join(exc.problems)))
            continue
        converted.append((index, entry, imported.specs[0]))
        answer["warnings"] += imported.warnings
    if answer["failed"]:
        return answer
    store = res.store()
    keep = []
    for index, entry, spec in converted:
        if dupe == "skip" and existing_job(store, spec) is not None:
            answer["skipped"].append(_item(index, None, entry))
        else:
            keep.append((index, entry, spec))
    try:
        result = import_specs(
            store,
            [spec for _, _, spec in keep],
            update=dupe == "update",
            server_uuid=res.settings.server_uuid,
            now_ms=_now_ms(),
        )
    except (ConflictError, OwnerError) as exc:
        answer["failed"] = [_item(_entry_index(exc, keep), None, None, str(exc))]
        return answer
    answer["succeeded"] = [
        _item(index, job, entry)
        for (index, entry, _), (_, job, _) in zip(keep, result.outcomes, strict=True)
    ]
    for line in answer["warnings"]:
        log.info("manager: import into %s: %s", project, line)
    return answer


def _entry_index(exc: Exception, keep: list[tuple[int, Any, JobSpec]]) -> int:
    """The index (in the request) of the entry a conflict names (``entry [i]`` among
    ``keep``), else the first."""
    text = str(exc)
    if text.startswith("entry ["):
        position = int(text[len("entry [") : text.index("]")])
        if position < len(keep):
            return keep[position][0]
    return keep[0][0] if keep else 0


@writer.post(
    "/project/{project}/jobs/import",
    responses={**ERRORS, 415: {"model": ErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        }
    },
)
async def import_jobs(
    v: Version,
    request: Request,
    res: Res,
    project: Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f/]+$")],
    dupe: Annotated[Literal["skip", "create", "update"], Query(alias="dupeOption")] = "create",
    uuids: Annotated[Literal["preserve", "remove"], Query(alias="uuidOption")] = "preserve",
    fileformat: Annotated[Literal["yaml", "json", "xml"] | None, Query()] = None,
) -> JSONResponse:
    """Import Rundeck job definitions (YAML, or their JSON form) into ``project``; see the
    module docstring. 200 with ``succeeded`` / ``failed`` / ``skipped`` / ``warnings``;
    400: a body that cannot be read, or XML; 415: a body that is not YAML or JSON."""
    entries = _entries(await request.body(), request.headers.get("content-type", ""), fileformat)
    answer = await run_in_threadpool(_import, res, project, entries, dupe, uuids)
    return JSONResponse(answer)
