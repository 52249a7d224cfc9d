"""Audit of takeover and recovery proposals, one row per proposal id (unique).

``record_takeover`` / ``record_recovery`` insert the row, or update it while its outcome is
not final yet (None — pending —, ``no_destination`` or ``held`` may be retried). A final
outcome (``FINAL_OUTCOMES``) is written once: recording the same proposal again changes
nothing and returns False. Called first inside the transaction that moves jobs or marks
executions, it makes committing one proposal twice impossible — on PostgreSQL the second
transaction waits on the row and then sees the final outcome.

``count_outcomes`` and ``takeover_lateness`` are the aggregates the manager's metrics read
at each scrape (one statement each, however long the history).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, Table, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from schemas.tables import recoveries, takeovers
from workers.store._db import Db, reading, writing

__all__ = [
    "FINAL_OUTCOMES",
    "Lateness",
    "RecoveryRow",
    "TakeoverRow",
    "count_outcomes",
    "find_recovery",
    "find_takeover",
    "list_recoveries",
    "list_takeovers",
    "record_recovery",
    "record_takeover",
    "takeover_lateness",
]

log = logging.getLogger(__name__)

FINAL_OUTCOMES = frozenset({"committed", "cancelled", "skipped", "manual"})


@dataclass(frozen=True)
class TakeoverRow:
    """One ``takeovers`` row; ``destinations`` maps member uuid -> jobs moved there."""

    id: int
    proposal_id: str
    dead_uuid: str
    policy: str
    proposed_ms: int
    due_ms: int
    decided_ms: int | None
    outcome: str | None
    jobs_moved: int
    destinations: dict[str, int]
    detail: str


@dataclass(frozen=True)
class RecoveryRow:
    """One ``recoveries`` row; ``retries`` is the JSON list the recovery worker stored."""

    id: int
    proposal_id: str
    dead_uuid: str
    policy: str
    proposed_ms: int
    due_ms: int
    decided_ms: int | None
    outcome: str | None
    executions_marked: int
    retries: tuple[Any, ...]
    detail: str


def record_takeover(
    db: Db,
    *,
    proposal_id: str,
    dead_uuid: str,
    policy: str,
    proposed_ms: int,
    due_ms: int,
    decided_ms: int | None = None,
    outcome: str | None = None,
    jobs_moved: int = 0,
    destinations: Mapping[str, int] | None = None,
    detail: str = "",
) -> bool:
    """Record takeover proposal ``proposal_id`` (times in epoch ms). False when it already
    has a final outcome (nothing changed). Raises ``IntegrityError`` for an unknown outcome."""
    values = {
        "proposal_id": proposal_id,
        "dead_uuid": dead_uuid,
        "policy": policy,
        "proposed_ms": proposed_ms,
        "due_ms": due_ms,
        "decided_ms": decided_ms,
        "outcome": outcome,
        "jobs_moved": jobs_moved,
        "destinations": dict(destinations or {}),
        "detail": detail,
    }
    return _record(db, takeovers, values)


def record_recovery(
    db: Db,
    *,
    proposal_id: str,
    dead_uuid: str,
    policy: str,
    proposed_ms: int,
    due_ms: int,
    decided_ms: int | None = None,
    outcome: str | None = None,
    executions_marked: int = 0,
    retries: Sequence[Any] = (),
    detail: str = "",
) -> bool:
    """Record recovery proposal ``proposal_id`` (times in epoch ms). False when it already
    has a final outcome (nothing changed)."""
    values = {
        "proposal_id": proposal_id,
        "dead_uuid": dead_uuid,
        "policy": policy,
        "proposed_ms": proposed_ms,
        "due_ms": due_ms,
        "decided_ms": decided_ms,
        "outcome": outcome,
        "executions_marked": executions_marked,
        "retries": list(retries),
        "detail": detail,
    }
    return _record(db, recoveries, values)


def _record(db: Db, table: Table, values: dict[str, Any]) -> bool:
    with writing(db) as conn:
        module = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert: Any = module.insert(table).values(values)
        kept = {"proposal_id", "proposed_ms"}
        stmt = insert.on_conflict_do_update(
            index_elements=[table.c.proposal_id],
            set_={key: insert.excluded[key] for key in values if key not in kept},
            where=or_(table.c.outcome.is_(None), table.c.outcome.not_in(FINAL_OUTCOMES)),
        )
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        changed = conn.execute(stmt.returning(table.c.id)).first() is not None
    log.info(
        "%s %s: outcome %s %s",
        table.name,
        values["proposal_id"],
        values["outcome"],
        "recorded" if changed else "ignored (already final)",
    )
    return changed


def list_takeovers(
    db: Db, *, dead_uuid: str | None = None, limit: int | None = 100
) -> list[TakeoverRow]:
    """Takeover audit rows, newest first."""
    return [TakeoverRow(**row) for row in _list(db, takeovers, dead_uuid, limit)]


def list_recoveries(
    db: Db, *, dead_uuid: str | None = None, limit: int | None = 100
) -> list[RecoveryRow]:
    """Recovery audit rows, newest first."""
    return [_recovery_row(row) for row in _list(db, recoveries, dead_uuid, limit)]


def find_takeover(db: Db, proposal_id: str) -> TakeoverRow | None:
    """The takeover audit row of ``proposal_id`` (None: never recorded)."""
    row = _find(db, takeovers, proposal_id)
    return None if row is None else TakeoverRow(**row)


def find_recovery(db: Db, proposal_id: str) -> RecoveryRow | None:
    """The recovery audit row of ``proposal_id`` (None: never recorded)."""
    row = _find(db, recoveries, proposal_id)
    return None if row is None else _recovery_row(row)


def _recovery_row(row: RowMapping) -> RecoveryRow:
    return RecoveryRow(**{**row, "retries": tuple(row["retries"])})


def _find(db: Db, table: Table, proposal_id: str) -> RowMapping | None:
    with reading(db) as conn:
        stmt = select(table).where(table.c.proposal_id == proposal_id)
        return conn.execute(stmt).mappings().one_or_none()


def _list(db: Db, table: Table, dead_uuid: str | None, limit: int | None) -> list[RowMapping]:
    stmt = select(table).order_by(table.c.proposed_ms.desc(), table.c.id.desc())
    if dead_uuid is not None:
        stmt = stmt.where(table.c.dead_uuid == dead_uuid)
    if limit is not None:
        stmt = stmt.limit(limit)
    with reading(db) as conn:
        return list(conn.execute(stmt).mappings())


@dataclass(frozen=True)
class Lateness:
    """Committed takeovers' lateness (``decided_ms - due_ms``) as histogram buckets:
    ``cumulative[i]`` takeovers were at most ``bounds_ms[i]`` late; ``count`` in all,
    ``sum_ms`` their total lateness."""

    bounds_ms: tuple[int, ...]
    cumulative: tuple[int, ...]
    count: int
    sum_ms: int


def count_outcomes(db: Db, kind: str) -> dict[str | None, int]:
    """Rows of ``kind`` (``"takeovers"`` or ``"recoveries"``) per outcome (None: pending).
    Raises ``ValueError`` for another kind."""
    tables = {"takeovers": takeovers, "recoveries": recoveries}
    if kind not in tables:
        raise ValueError(f"no audit table {kind!r}")
    table = tables[kind]
    stmt = select(table.c.outcome, func.count()).group_by(table.c.outcome)
    with reading(db) as conn:
        return {outcome: int(n) for outcome, n in conn.execute(stmt)}


def takeover_lateness(db: Db, bounds_ms: Sequence[int]) -> Lateness:
    """How late after their due time (``proposed + autotakeover.delay``) the committed
    takeovers were committed, counted per upper bound of ``bounds_ms`` (ascending), in one
    aggregate statement. Manual takeovers (due = decided) are not counted."""
    t = takeovers
    late = t.c.decided_ms - t.c.due_ms
    stmt = select(
        func.count(),
        func.coalesce(func.sum(late), 0),
        *(func.coalesce(func.sum(case((late <= bound, 1), else_=0)), 0) for bound in bounds_ms),
    ).where(t.c.outcome == "committed", t.c.decided_ms.is_not(None))
    with reading(db) as conn:
        count, sum_ms, *cumulative = conn.execute(stmt).one()
    return Lateness(tuple(bounds_ms), tuple(int(c) for c in cumulative), int(count), int(sum_ms))
