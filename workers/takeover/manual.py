"""Manual takeover, the Cluster Manager's: the same commit as Autotakeover, chosen by hand.

The answer has the shape of the compatible API call (``PUT /api/14/scheduler/takeover``).
``qwc takeover`` and the manager's API (``workers.manager``) both call ``manual_takeover``.

Refused before anything moves: an unknown member (``from`` or ``to``: unknown to the
liveness view, the store's members and the jobs' owners) or job id (``NotFoundError``),
a dead ``to`` member, or ``to`` equal to ``from`` (``TakeoverRefused``).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

import redis

from schemas.errors import NotFoundError, QwcError
from schemas.keys import Keys
from schemas.messages import MemberState
from schemas.settings import Settings, TakeoverPolicy
from workers.liveness import view
from workers.proposals import candidates_from_view
from workers.store import (
    Store,
    commit_takeover,
    count_jobs_by_owner,
    get_job,
    known_member_uuids,
    list_jobs,
)
from workers.takeover.decide import choose_quotas

__all__ = ["TakeoverRefused", "manual_takeover"]


class TakeoverRefused(QwcError, ValueError):
    """The takeover asked for cannot be done (dead destination, ``to`` equal to ``from``);
    nothing moved."""


def manual_takeover(
    client: redis.Redis,
    store: Store,
    settings: Settings,
    *,
    from_uuid: str | None,
    to_uuid: str | None,
    project: str | None = None,
    job_ids: Sequence[str] = (),
    now_ms: int,
) -> dict[str, Any]:
    """Move the jobs of ``from_uuid`` (None: of every member) to ``to_uuid`` (None: spread
    over the active, non-passive members, fewest-owned first). ``project`` and ``job_ids``
    narrow the jobs. Returns the compatible answer; ``success`` is False when nothing could
    receive the jobs.

    Raises ``NotFoundError`` for an unknown member or job id and ``TakeoverRefused`` for a
    dead ``to_uuid`` or ``to_uuid == from_uuid``; nothing moved then.
    """
    snap = view.read_snapshot(client, Keys(settings.redis_prefix))
    owned = count_jobs_by_owner(store)
    _check_request(snap, store, owned, from_uuid, to_uuid, job_ids)
    jobs = [
        j
        for j in list_jobs(store, owner_uuid=from_uuid, project=project)
        if (not job_ids or j.id in job_ids) and j.owner_uuid != to_uuid
    ]
    server: dict[str, Any] = {"uuid": from_uuid} if from_uuid else {"all": True}
    if to_uuid is not None:
        quotas = [(to_uuid, len(jobs))] if jobs else []
    else:
        members = candidates_from_view(snap, owned)
        any_policy = settings.model_copy(update={"autotakeover_policy": TakeoverPolicy.ANY})
        quotas = choose_quotas(members, from_uuid or "", len(jobs), any_policy, seed="manual")
    if jobs and not quotas:
        return _answer(
            False, "No active member can receive the jobs.", server, settings, to_uuid, jobs, []
        )
    result = commit_takeover(
        store,
        proposal_id=f"manual-{uuidlib.uuid4().hex}",
        dead_uuid=from_uuid,
        policy="manual",
        proposed_ms=now_ms,
        due_ms=now_ms,
        now_ms=now_ms,
        quotas=quotas,
        outcome="manual",
        project=project,
        job_ids=[j.id for j in jobs] if job_ids else None,
    )
    moved = [{"id": m.job_id, "previous-owner": m.previous_owner} for m in result.moved]
    return _answer(True, "Schedule takeover successful.", server, settings, to_uuid, jobs, moved)


def _check_request(
    snap: view.ViewSnapshot,
    store: Store,
    owned: dict[str, int],
    from_uuid: str | None,
    to_uuid: str | None,
    job_ids: Sequence[str],
) -> None:
    """Raise ``NotFoundError`` / ``TakeoverRefused`` for a request that cannot be done."""
    if from_uuid is not None and from_uuid == to_uuid:
        raise TakeoverRefused(f"member {from_uuid} cannot take over its own jobs")
    known = set(snap.seen_ms) | set(snap.states) | set(owned)
    for role, member in (("from", from_uuid), ("to", to_uuid)):
        if member is not None and member not in known and member not in known_member_uuids(store):
            raise NotFoundError(f"unknown member {member} ({role}): no heartbeat, record or job")
    if to_uuid is not None and snap.states.get(to_uuid) is MemberState.DEAD:
        raise TakeoverRefused(f"member {to_uuid} is dead: it cannot receive jobs")
    for job_id in dict.fromkeys(job_ids):
        get_job(store, job_id)  # NotFoundError: "job ... does not exist"


def _answer(
    success: bool,
    message: str,
    server: dict[str, Any],
    settings: Settings,
    to_uuid: str | None,
    jobs: Sequence[Any],
    moved: list[dict[str, str]],
) -> dict[str, Any]:
    moved_ids = {m["id"] for m in moved}
    failed = [{"id": j.id, "previous-owner": j.owner_uuid} for j in jobs if j.id not in moved_ids]
    return {
        "success": success,
        "message": message,
        "self": {"server": {"uuid": to_uuid or settings.server_uuid}},
        "takeoverSchedule": {
            "server": server,
            "jobs": {"total": len(jobs), "successful": moved, "failed": failed},
        },
    }
