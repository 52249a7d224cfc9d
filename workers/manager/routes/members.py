"""``/api/cluster/members``: the cluster view, as ``qwc members --json`` shows it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from schemas.errors import NotFoundError
from workers.jobs import job_json
from workers.liveness.listing import collect_member_rows
from workers.manager.auth import require_read
from workers.manager.deps import MemberPath, Res
from workers.manager.errors import ErrorBody
from workers.manager.models import Job, Member
from workers.manager.resources import Resources
from workers.store import list_jobs

__all__ = ["known_member", "router"]

router = APIRouter(prefix="/api/cluster", tags=["members"], dependencies=[Depends(require_read)])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


def known_member(res: Resources, uuid: str) -> dict[str, Any]:
    """The member row of ``uuid``. Raises ``NotFoundError`` when neither the view nor the
    store (members, job owners) knows it."""
    for row in collect_member_rows(res.redis(), res.store(), res.keys):
        if row["uuid"] == uuid:
            return row
    raise NotFoundError(f"unknown member {uuid}: no heartbeat, record or job")


@router.get("/members", response_model=list[Member])
def members(res: Res) -> list[dict[str, Any]]:
    """Every member: state, heartbeat age (Redis clock), tags, passive, jobs owned, running
    executions; sorted by name then uuid."""
    return collect_member_rows(res.redis(), res.store(), res.keys)


@router.get("/members/{uuid}", response_model=Member, responses=NOT_FOUND)
def member(uuid: MemberPath, res: Res) -> dict[str, Any]:
    """One member (404 when unknown)."""
    return known_member(res, uuid)


@router.get("/members/{uuid}/jobs", response_model=list[Job], responses=NOT_FOUND)
def member_jobs(uuid: MemberPath, res: Res) -> list[dict[str, Any]]:
    """The jobs a member owns (404 when the member is unknown)."""
    known_member(res, uuid)
    return [job_json(j) for j in list_jobs(res.store(), owner_uuid=uuid)]
