"""The recovery history as JSON objects: what ``qwc recoveries --json`` prints and the
manager's API answers (one shape, built here)."""

from __future__ import annotations

from typing import Any

from workers.liveness.listing import iso_utc
from workers.store import RecoveryRow

__all__ = ["recovery_json"]


def recovery_json(r: RecoveryRow) -> dict[str, Any]:
    """One recovery audit row: times as ISO UTC, ``retried`` the number of retries and
    ``retries`` each retry (execution, job, from, to, retry_execution, attempt,
    not_before_ms)."""
    return {
        "proposal_id": r.proposal_id,
        "dead_uuid": r.dead_uuid,
        "policy": r.policy,
        "proposed_at": iso_utc(r.proposed_ms),
        "due_at": iso_utc(r.due_ms),
        "decided_at": iso_utc(r.decided_ms),
        "outcome": r.outcome,
        "executions_marked": r.executions_marked,
        "retried": len(r.retries),
        "retries": list(r.retries),
        "detail": r.detail,
    }
