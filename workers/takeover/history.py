"""The takeover history as JSON objects: what ``qwc takeovers --json`` prints and the
manager's API answers (one shape, built here)."""

from __future__ import annotations

from typing import Any

from workers.liveness.listing import iso_utc
from workers.store import Db, TakeoverRow, list_takeovers

__all__ = ["takeover_history", "takeover_json"]


def takeover_json(t: TakeoverRow) -> dict[str, Any]:
    """One takeover audit row: times as ISO UTC (also ``*_ms``), outcome None while pending."""
    return {
        "proposal_id": t.proposal_id,
        "dead_uuid": t.dead_uuid,
        "policy": t.policy,
        "proposed_at": iso_utc(t.proposed_ms),
        "proposed_ms": t.proposed_ms,
        "due_at": iso_utc(t.due_ms),
        "due_ms": t.due_ms,
        "decided_at": iso_utc(t.decided_ms),
        "decided_ms": t.decided_ms,
        "outcome": t.outcome,
        "jobs_moved": t.jobs_moved,
        "destinations": t.destinations,
        "detail": t.detail,
    }


def takeover_history(
    db: Db, *, dead_uuid: str | None = None, limit: int | None = 100
) -> list[dict[str, Any]]:
    """The takeover history, newest first (optionally of one member), as JSON objects."""
    return [takeover_json(t) for t in list_takeovers(db, dead_uuid=dead_uuid, limit=limit)]
