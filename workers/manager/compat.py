"""Pure: the compatible calls of the product this replaces — their body, answer and jobs.

``PUT /api/{v}/scheduler/takeover`` (v >= 14) takes ``{"server": {"uuid": U} | {"all":
true}, "project": P, "job": {"id": J}}`` and, from v 32, ``"jobs": [{"id": J}, …]``; it
answers ``manual_takeover``'s answer, whose successful jobs carry ``previous-owner`` from
v 17 on. ``GET /api/{v}/scheduler/jobs`` and ``…/server/{uuid}/jobs`` list jobs as that
product lists scheduled jobs. Nothing here reads Redis or the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.errors import QwcError
from schemas.messages import canonical_uuid
from workers.store import JobRow

__all__ = [
    "EMPTY_REQUEST",
    "MIN_VERSION",
    "PREVIOUS_OWNER_VERSION",
    "TAKEOVER_BODY_SCHEMA",
    "TAKEOVER_JOBS_VERSION",
    "BadRequest",
    "CompatTakeover",
    "compat_job",
    "parse_takeover_body",
    "version_problem",
    "versioned_answer",
]

MIN_VERSION = 14
PREVIOUS_OWNER_VERSION = 17
TAKEOVER_JOBS_VERSION = 32
EMPTY_REQUEST = "Expected server.uuid or server.all or job.id in request."

_ID = {"type": "object", "properties": {"id": {"type": "string"}}}
TAKEOVER_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Which jobs to take over: those of server.uuid, of every member "
    "(server.all), of one job (job.id) or, from API version 32, of a list (jobs); "
    "project narrows them.",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "uuid": {"type": "string", "format": "uuid"},
                "all": {"type": "boolean"},
            },
        },
        "project": {"type": "string"},
        "job": _ID,
        "jobs": {"type": "array", "items": _ID, "description": "API version 32 and later"},
    },
    "example": {"server": {"uuid": "8f3d5976-2232-4529-847b-8e45764608e3"}, "project": "p"},
}


class BadRequest(QwcError, ValueError):
    """The compatible body cannot be used; the message is the 400 answer's."""


@dataclass(frozen=True)
class CompatTakeover:
    """A parsed takeover request: ``from_uuid`` None means every member's jobs."""

    from_uuid: str | None
    project: str | None
    job_ids: tuple[str, ...]


def version_problem(version: int) -> str | None:
    """Why an API version is refused, None when it is served."""
    if version < MIN_VERSION:
        return f"API version {version} is not supported: the minimum is {MIN_VERSION}"
    return None


def _text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise BadRequest(f"{where} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, escaped in the JSON
        raise BadRequest(f"{where} is not valid text") from None
    return value or None


def _flag(value: object, where: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"{where} must be true or false")


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object")
    return value


def _job_ids(body: dict[str, Any], version: int) -> tuple[str, ...]:
    ids = [_text(_object(body.get("job"), "job").get("id"), "job.id")]
    listed = body.get("jobs") if version >= TAKEOVER_JOBS_VERSION else None
    if listed is not None:
        if not isinstance(listed, list):
            raise BadRequest('jobs must be a list of {"id": …} objects')
        for i, entry in enumerate(listed):
            ids.append(_text(_object(entry, f"jobs[{i}]").get("id"), f"jobs[{i}].id"))
    return tuple(dict.fromkeys(i for i in ids if i))


def parse_takeover_body(body: object, version: int) -> CompatTakeover:
    """The takeover asked for by ``body`` (the decoded JSON; None: no body) at API
    ``version``. ``jobs`` is read from version 32 on, ignored before. Raises
    ``BadRequest`` (``EMPTY_REQUEST`` when it names no server and no job)."""
    if body is None or body == {}:
        raise BadRequest(EMPTY_REQUEST)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    server = _object(body.get("server"), "server")
    raw_uuid = _text(server.get("uuid"), "server.uuid")
    all_ = _flag(server.get("all"), "server.all")
    job_ids = _job_ids(body, version)
    if raw_uuid is None and not all_ and not job_ids:
        raise BadRequest(EMPTY_REQUEST)
    from_uuid = None
    if raw_uuid is not None and not all_:
        try:
            from_uuid = canonical_uuid(raw_uuid)
        except ValueError:
            raise BadRequest(f"server.uuid is not a UUID: {raw_uuid!r}") from None
    return CompatTakeover(from_uuid, _text(body.get("project"), "project"), job_ids)


def versioned_answer(answer: dict[str, Any], version: int, project: str | None) -> dict[str, Any]:
    """``manual_takeover``'s answer as API ``version`` gives it: without ``previous-owner``
    before version 17; with the ``project`` asked for, when one was."""
    schedule = dict(answer["takeoverSchedule"])
    if project is not None:
        schedule["project"] = project
    if version < PREVIOUS_OWNER_VERSION:
        jobs = schedule["jobs"]
        schedule["jobs"] = {
            **jobs,
            "successful": [{"id": j["id"]} for j in jobs["successful"]],
            "failed": [{"id": j["id"]} for j in jobs["failed"]],
        }
    return {**answer, "takeoverSchedule": schedule}


def compat_job(job: JobRow, server_uuid: str | None) -> dict[str, Any]:
    """A job as the product lists scheduled jobs (``serverOwner``: this manager's member
    owns it; ``scheduleEnabled`` and ``enabled``: its schedule's and its execution's
    flags, as the product names them)."""
    return {
        "id": job.id,
        "name": job.name,
        "group": job.group_name or None,
        "project": job.project,
        "description": job.description,
        "scheduled": job.schedule is not None,
        "scheduleEnabled": job.schedule_enabled,
        "enabled": job.execution_enabled,
        "serverNodeUUID": job.owner_uuid,
        "serverOwner": server_uuid is not None and job.owner_uuid == server_uuid,
    }
