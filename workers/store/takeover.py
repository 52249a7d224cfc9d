"""Commit a takeover: move a member's jobs to their new owners in one transaction.

``commit_takeover`` is what the takeover worker (and the manual ``qwc takeover``) calls once
it has decided who receives how many jobs. In one transaction it

1. records the ``takeovers`` audit row keyed by the unique proposal id — a proposal that
   already has a final outcome commits nothing (a redelivered proposal is harmless; on
   PostgreSQL a racing second commit waits on the row and then sees the outcome);
2. moves the jobs with ONE set-based ``UPDATE scheduled_jobs``: the candidates, ranked,
   go to the destinations in the order of ``quotas`` (the first ``q1`` to the first one, the
   next ``q2`` to the second, ...; a surplus to the last), ``owner_epoch + 1`` (which fences
   the previous owner out), ``modified_ms = now_ms`` (``modified_by`` unchanged: a takeover
   is not a modification of the job);
3. moves the previous owners' pending one-off executions (status ``scheduled``) of the
   moved jobs to the jobs' new owners, with one UPDATE;
4. writes the outcome, the number of jobs moved and the destinations on the audit row.

No window function joined back to the table: the rank key at each cumulative quota is
found first (see ``_boundaries``) and each row's owner is a ``CASE`` on its key — the
assignment ``row_number()`` would give, without a join, so the statement costs about what
a bare ``UPDATE ... WHERE owner_uuid = :dead`` costs (see ``bench/takeover.py``). The rank
key is the job id on PostgreSQL (one sort for every boundary) and the rowid on SQLite
(read from the owner index without a sort). Either way the spread is a deterministic
function of the table's content.

``record_takeover_outcome`` records the decisions that move nothing (cancelled, skipped,
no_destination, held); ``held`` and ``no_destination`` are not final, so the same proposal
can still be committed later.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    case,
    func,
    literal,
    literal_column,
    select,
    true,
)

from schemas.tables import TAKEOVER_OUTCOMES, executions, scheduled_jobs
from workers.store._db import Db, writing
from workers.store.audit import FINAL_OUTCOMES, record_takeover

__all__ = [
    "ALL_OWNERS",
    "COMMIT_OUTCOMES",
    "MovedJob",
    "TakeoverCommit",
    "commit_takeover",
    "record_takeover_outcome",
]

log = logging.getLogger(__name__)

# ``dead_uuid`` recorded on the audit row of a takeover of every owner's jobs (``--all``).
ALL_OWNERS = "*"
COMMIT_OUTCOMES = frozenset({"committed", "manual"})

_j = scheduled_jobs
_e = executions


@dataclass(frozen=True, slots=True)
class MovedJob:
    """One job moved by a takeover."""

    job_id: str
    previous_owner: str
    new_owner: str


@dataclass(frozen=True)
class TakeoverCommit:
    """What ``commit_takeover`` did. ``committed`` False: the proposal had already been
    decided (final outcome) and nothing changed."""

    committed: bool
    moved: list[MovedJob]
    destinations: dict[str, int]  # new owner -> jobs received
    executions_moved: int

    @property
    def jobs_moved(self) -> int:
        """Number of jobs moved (also when ``moved`` was not asked for)."""
        return sum(self.destinations.values())


@dataclass(frozen=True)
class _Scope:
    """Which jobs a takeover considers: of ``dead_uuid`` (None: of every owner but the
    destinations), optionally only of ``project`` and/or ``job_ids``."""

    dead_uuid: str | None
    destinations: tuple[str, ...]
    project: str | None
    job_ids: tuple[str, ...] | None

    def where(self, table: Any, *, owners: bool = True) -> ColumnElement[bool]:
        """The filter on ``table`` (``scheduled_jobs`` or an alias of it); ``owners=False``
        drops the owner condition."""
        terms: list[ColumnElement[bool]] = []
        if owners:
            if self.dead_uuid is not None:  # a deleted job has no owner: never in this scope
                terms.append(table.c.owner_uuid == self.dead_uuid)
            else:
                terms.append(table.c.owner_uuid.not_in(self.destinations))
                terms.append(table.c.deleted_ms.is_(None))
        else:
            terms.append(table.c.deleted_ms.is_(None))
        if self.project is not None:
            terms.append(table.c.project == self.project)
        if self.job_ids is not None:
            terms.append(table.c.id.in_(self.job_ids))
        return and_(true(), *terms)


def commit_takeover(
    db: Db,
    *,
    proposal_id: str,
    dead_uuid: str | None,
    policy: str,
    proposed_ms: int,
    due_ms: int,
    now_ms: int,
    quotas: Sequence[tuple[str, int]],
    outcome: str = "committed",
    project: str | None = None,
    job_ids: Sequence[str] | None = None,
    detail: str = "",
    with_jobs: bool = True,
) -> TakeoverCommit:
    """Move the jobs of ``dead_uuid`` to the destinations of ``quotas``, in one transaction.

    ``quotas`` is ``[(member uuid, jobs to receive), ...]``: the jobs, ranked, go to the
    destinations in that order, a surplus (jobs more than the quotas add up to) to the last
    one. Empty ``quotas`` moves nothing (a member owning no job) but still records the
    outcome. ``dead_uuid`` None takes the jobs of every owner except the destinations (the
    manual ``--all``; recorded as ``ALL_OWNERS``). ``project`` and ``job_ids`` restrict the
    jobs considered. Times are epoch ms; ``outcome`` is ``committed`` or ``manual``.
    ``with_jobs=False`` leaves ``moved`` empty (``destinations`` and ``jobs_moved`` still
    count them): no row per job is fetched, which is what a worker that only logs wants.

    Returns ``committed=False`` and changes nothing when the proposal already has a final
    outcome. Raises ``ValueError`` for a bad outcome, a negative quota or a destination
    equal to ``dead_uuid``; any database error rolls the whole takeover back.
    """
    scope = _scope(dead_uuid, quotas, outcome, project, job_ids)
    audit: dict[str, Any] = {
        "proposal_id": proposal_id,
        "dead_uuid": dead_uuid or ALL_OWNERS,
        "policy": policy,
        "proposed_ms": proposed_ms,
        "due_ms": due_ms,
        "detail": detail,
    }
    with writing(db) as conn:
        if not record_takeover(conn, **audit):  # first: takes the proposal's row
            log.info("takeover %s: already decided, nothing committed", proposal_id)
            return TakeoverCommit(False, [], {}, 0)
        moved: list[MovedJob] = []
        destinations: dict[str, int] = {}
        if quotas:
            moved, destinations = _move_jobs(conn, scope, quotas, now_ms, with_jobs)
        previous = [dead_uuid] if dead_uuid else sorted({m.previous_owner for m in moved})
        executions_moved = _move_executions(conn, scope, previous) if destinations else 0
        jobs_moved = sum(destinations.values())
        record_takeover(
            conn,
            **audit,
            decided_ms=now_ms,
            outcome=outcome,
            jobs_moved=jobs_moved,
            destinations=destinations,
        )
    log.info(
        "takeover %s: %s job(s) of %s moved to %s, %s pending execution(s) moved",
        proposal_id,
        jobs_moved,
        audit["dead_uuid"],
        destinations,
        executions_moved,
    )
    return TakeoverCommit(True, moved if with_jobs else [], destinations, executions_moved)


def record_takeover_outcome(
    db: Db,
    *,
    proposal_id: str,
    dead_uuid: str,
    policy: str,
    proposed_ms: int,
    due_ms: int,
    now_ms: int,
    outcome: str,
    detail: str = "",
) -> bool:
    """Record a decision that moves no job: ``cancelled``, ``skipped``, ``no_destination``
    or ``held`` (times in epoch ms; ``now_ms`` is the decision time).

    ``held`` and ``no_destination`` are not final: the proposal may be recorded or committed
    again later. False when the proposal already had a final outcome (nothing changed).
    Raises ``ValueError`` for ``committed``/``manual`` (use ``commit_takeover``) or an
    unknown outcome.
    """
    if outcome not in TAKEOVER_OUTCOMES or outcome in COMMIT_OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not a takeover decision without a commit")
    return record_takeover(
        db,
        proposal_id=proposal_id,
        dead_uuid=dead_uuid,
        policy=policy,
        proposed_ms=proposed_ms,
        due_ms=due_ms,
        decided_ms=now_ms,
        outcome=outcome,
        detail=detail,
    )


def _scope(
    dead_uuid: str | None,
    quotas: Sequence[tuple[str, int]],
    outcome: str,
    project: str | None,
    job_ids: Sequence[str] | None,
) -> _Scope:
    """Validate the arguments of ``commit_takeover``; raises ``ValueError``."""
    if outcome not in COMMIT_OUTCOMES or outcome not in FINAL_OUTCOMES:
        raise ValueError(f"a takeover commit's outcome is committed or manual, not {outcome!r}")
    destinations = tuple(dest for dest, _ in quotas)
    if any(quota < 0 for _, quota in quotas):
        raise ValueError(f"negative quota in {list(quotas)}")
    if dead_uuid is not None and dead_uuid in destinations:
        raise ValueError(f"member {dead_uuid} cannot receive its own jobs")
    ids = None if job_ids is None else tuple(job_ids)
    return _Scope(dead_uuid, destinations, project, ids)


def _owner_case(conn: Connection, scope: _Scope, quotas: Sequence[tuple[str, int]]) -> Any:
    """``CASE WHEN key <= <key of rank q1> THEN d1 WHEN key <= <key of rank q1+q2> THEN d2
    ... ELSE d_last END``; a missing rank (fewer jobs than the quotas) matches every key."""
    cumulative: list[int] = []
    dests: list[str] = []
    for dest, quota in quotas[:-1]:
        if quota > 0:
            cumulative.append((cumulative[-1] if cumulative else 0) + quota)
            dests.append(dest)
    last = quotas[-1][0]
    if not cumulative:
        return last
    key = _rank_key(conn, _j)
    bounds = _boundaries(conn, scope, cumulative)
    whens = [(key <= func.coalesce(b, key), d) for b, d in zip(bounds, dests, strict=True)]
    return case(*whens, else_=last)


def _rank_key(conn: Connection, table: Any) -> Any:
    """What jobs are ranked by: the id on PostgreSQL; the rowid on SQLite, where the owner
    index holds it (``(owner_uuid, rowid)``), so a rank is found without reading the
    table or sorting — ranking 100,000 jobs by id there costs ~80% of the UPDATE."""
    if conn.dialect.name == "sqlite":
        return literal_column(f"{table.name}.rowid", Integer)
    return table.c.id


def _boundaries(conn: Connection, scope: _Scope, ranks: list[int]) -> list[Any]:
    """The rank key of each of ``ranks`` (1-based) among the jobs in scope, NULL when there
    are fewer jobs, as SQL expressions for the UPDATE.

    PostgreSQL: scalar subqueries on one numbered CTE (one sort for every boundary); the
    statement reads its snapshot, never its own changes. SQLite reads its own changes and
    evaluates a subquery of a ``CASE`` branch when the branch is first reached — after
    earlier rows were updated — so its boundaries are read by a SELECT just before (exact:
    the transaction holds the write lock), with index-only walks of ``(owner_uuid, rowid)``.
    """
    ranked = _j.alias("ranked")
    key = _rank_key(conn, ranked)
    if conn.dialect.name == "sqlite":
        base = select(key).where(scope.where(ranked)).order_by(key).limit(1)
        found = conn.execute(select(*(base.offset(r - 1).scalar_subquery() for r in ranks)))
        return [literal(value, Integer) for value in found.one()]
    numbered = (
        select(key.label("k"), func.row_number().over(order_by=key).label("rn"))
        .where(scope.where(ranked))
        .subquery("numbered")
    )
    bounds = select(numbered.c.k, numbered.c.rn).where(numbered.c.rn.in_(ranks)).cte("bounds")
    return [select(bounds.c.k).where(bounds.c.rn == rank).scalar_subquery() for rank in ranks]


def _move_jobs(
    conn: Connection,
    scope: _Scope,
    quotas: Sequence[tuple[str, int]],
    now_ms: int,
    with_jobs: bool,
) -> tuple[list[MovedJob], dict[str, int]]:
    """The one UPDATE of ``scheduled_jobs``: the moved jobs (when ``with_jobs``, or for
    ``--all``) and how many each destination received."""
    stmt = (
        _j.update()
        .where(scope.where(_j))
        .values(
            owner_uuid=_owner_case(conn, scope, quotas),
            owner_epoch=_j.c.owner_epoch + 1,
            modified_ms=now_ms,
        )
    )
    if scope.dead_uuid is None:
        moved = _move_every_owners_jobs(conn, scope, stmt)
    elif with_jobs:
        rows = conn.execute(stmt.returning(_j.c.id, _j.c.owner_uuid)).all()
        dead = scope.dead_uuid
        moved = [MovedJob(job_id, dead, owner) for job_id, owner in rows]
    else:
        return [], _count_moved(conn, stmt, quotas)
    return moved, dict(Counter(m.new_owner for m in moved))


def _count_moved(conn: Connection, stmt: Any, quotas: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Run the UPDATE without fetching one row per job; jobs received per destination.

    PostgreSQL counts in the database (``WITH moved AS (UPDATE ... RETURNING owner_uuid)
    SELECT owner_uuid, count(*) ...``). On SQLite the statement runs alone on the database,
    so its ranks are contiguous and the counts follow from the number of rows changed."""
    if conn.dialect.name == "postgresql":
        moved = stmt.returning(_j.c.owner_uuid).cte("moved")
        counted = select(moved.c.owner_uuid, func.count()).group_by(moved.c.owner_uuid)
        return {owner: count for owner, count in conn.execute(counted).all()}
    return _received(quotas, conn.execute(stmt).rowcount)


def _received(quotas: Sequence[tuple[str, int]], jobs: int) -> dict[str, int]:
    """How many of ``jobs`` jobs each destination of ``quotas`` receives when they are
    handed out in rank order, a surplus to the last destination (only those receiving)."""
    counts: Counter[str] = Counter()
    left = jobs
    for dest, quota in quotas[:-1]:
        take = min(quota, left)
        counts[dest] += take
        left -= take
    if quotas and left > 0:
        counts[quotas[-1][0]] += left
    return {dest: count for dest, count in counts.items() if count > 0}


def _move_every_owners_jobs(conn: Connection, scope: _Scope, stmt: Any) -> list[MovedJob]:
    """``--all``: the previous owner differs per job. PostgreSQL returns it from a self-join
    (the joined row is the statement's snapshot; ``old.owner_uuid = owner_uuid`` skips a
    row another transaction re-owned meanwhile). SQLite cannot return a joined column, but
    the transaction holds the database's write lock, so a SELECT just before is exact."""
    if conn.dialect.name == "postgresql":
        old = _j.alias("old")
        stmt = stmt.where(old.c.id == _j.c.id, old.c.owner_uuid == _j.c.owner_uuid)
        rows = conn.execute(stmt.returning(_j.c.id, old.c.owner_uuid, _j.c.owner_uuid)).all()
        return [MovedJob(job_id, previous, new) for job_id, previous, new in rows]
    before = dict(conn.execute(select(_j.c.id, _j.c.owner_uuid).where(scope.where(_j))).all())
    rows = conn.execute(stmt.returning(_j.c.id, _j.c.owner_uuid)).all()
    return [MovedJob(job_id, before[job_id], owner) for job_id, owner in rows]


def _move_executions(conn: Connection, scope: _Scope, previous_owners: Sequence[str]) -> int:
    """Move ``previous_owners``' ``scheduled`` executions of jobs now owned by a destination
    (in the takeover's scope) to the job's owner; one UPDATE. Returns how many moved.

    "Moved jobs" is read back as "jobs in scope owned by a destination", so with ``--all`` a
    previous owner's pending execution of a job a destination already owned moves too."""
    moved_jobs = select(_j.c.id).where(
        scope.where(_j, owners=False), _j.c.owner_uuid.in_(scope.destinations)
    )
    owner = select(_j.c.owner_uuid).where(_j.c.id == _e.c.job_id).scalar_subquery()
    stmt = (
        _e.update()
        .where(
            _e.c.member_uuid.in_(sorted(previous_owners)),
            _e.c.status == "scheduled",
            _e.c.job_id.in_(moved_jobs),
        )
        .values(member_uuid=owner, queued_ms=None)
    )
    count: int = conn.execute(stmt).rowcount
    return count
