"""Reports over recorded executions: fires counted twice, fire times with no execution.

Only fires of a schedule count (``trigger`` ``schedule``, or ``catchup``: one execution
for the times a ``fire_once`` job missed, claimed at the newest of them): a retry or a
manual run of a job is not a fire of its schedule. A *fire* is one ``(job_id, fire_ms)``
pair; the fence
(``workers.store.fence``) lets each pair be claimed once, so :func:`count_double_fires` is 0
unless something is wrong.

Missed fires are computed in two halves: :func:`fire_times_by_job` reads the distinct fire
times per job (store), :func:`split_missed_fires` finds the expected times that have no
execution (pure). :func:`count_missed_fires` does both. All times are epoch ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from schemas.tables import executions
from workers.store._db import Db, reading

__all__ = [
    "MissedFires",
    "count_double_fires",
    "count_executions_by_member",
    "count_missed_fires",
    "fire_times_by_job",
    "missing_fire_times",
    "split_missed_fires",
]

_t = executions
_SCHEDULED = _t.c.trigger.in_(("schedule", "catchup"))


@dataclass(frozen=True)
class MissedFires:
    """Expected fire times with no execution, per job id (only jobs with some are keys).

    ``missed`` are unexplained gaps; ``excused`` are gaps inside the job's excused window
    (for example while its owner was dead and not yet taken over).
    """

    missed: dict[str, int] = field(default_factory=dict)
    excused: dict[str, int] = field(default_factory=dict)

    @property
    def missed_total(self) -> int:
        """Sum of ``missed``."""
        return sum(self.missed.values())

    @property
    def excused_total(self) -> int:
        """Sum of ``excused``."""
        return sum(self.excused.values())


def count_double_fires(db: Db) -> int:
    """Number of ``(job_id, fire_ms)`` pairs with more than one scheduled execution.

    One ``GROUP BY job_id, fire_ms HAVING count(*) > 1`` over ``executions``.
    """
    pairs = (
        select(_t.c.job_id, _t.c.fire_ms)
        .where(_SCHEDULED)
        .group_by(_t.c.job_id, _t.c.fire_ms)
        .having(func.count() > 1)
        .subquery()
    )
    with reading(db) as conn:
        return int(conn.execute(select(func.count()).select_from(pairs)).scalar_one())


def count_executions_by_member(db: Db, *, since_ms: int | None = None) -> dict[str, int]:
    """Scheduled executions per member uuid (with ``fire_ms >= since_ms`` when given)."""
    stmt = select(_t.c.member_uuid, func.count()).where(_SCHEDULED).group_by(_t.c.member_uuid)
    if since_ms is not None:
        stmt = stmt.where(_t.c.fire_ms >= since_ms)
    with reading(db) as conn:
        return {member: int(n) for member, n in conn.execute(stmt)}


def fire_times_by_job(
    db: Db, *, since_ms: int | None = None, until_ms: int | None = None
) -> dict[str, list[int]]:
    """Distinct scheduled fire times (epoch ms) per job id, ascending, within
    ``[since_ms, until_ms]`` (either bound optional). Jobs never fired are absent."""
    stmt = select(_t.c.job_id, _t.c.fire_ms).where(_SCHEDULED).distinct()
    if since_ms is not None:
        stmt = stmt.where(_t.c.fire_ms >= since_ms)
    if until_ms is not None:
        stmt = stmt.where(_t.c.fire_ms <= until_ms)
    times: dict[str, list[int]] = {}
    with reading(db) as conn:
        for job_id, fire_ms in conn.execute(stmt.order_by(_t.c.job_id, _t.c.fire_ms)):
            times.setdefault(job_id, []).append(int(fire_ms))
    return times


def missing_fire_times(fire_times_ms: Sequence[int], *, period_ms: int = 1000) -> list[int]:
    """The times ``first + k * period_ms`` up to the last of ``fire_times_ms`` (ascending,
    distinct) that are not in it. Pure. Raises ``ValueError`` when ``period_ms <= 0``."""
    if period_ms <= 0:
        raise ValueError("period_ms must be > 0")
    if not fire_times_ms:
        return []
    seen = set(fire_times_ms)
    first, last = fire_times_ms[0], fire_times_ms[-1]
    return [t for t in range(first, last + 1, period_ms) if t not in seen]


def split_missed_fires(
    times_by_job: Mapping[str, Sequence[int]],
    *,
    excused: Mapping[str, tuple[int, int]] | None = None,
    period_ms: int = 1000,
) -> MissedFires:
    """Missing fire times per job, split by the job's excused window ``(from_ms, to_ms)``
    (inclusive; jobs without one have none). Pure; see :func:`missing_fire_times`."""
    windows = excused or {}
    missed: dict[str, int] = {}
    forgiven: dict[str, int] = {}
    for job_id, times in times_by_job.items():
        window = windows.get(job_id)
        for t in missing_fire_times(times, period_ms=period_ms):
            inside = window is not None and window[0] <= t <= window[1]
            bucket = forgiven if inside else missed
            bucket[job_id] = bucket.get(job_id, 0) + 1
    return MissedFires(missed, forgiven)


def count_missed_fires(
    db: Db,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    excused: Mapping[str, tuple[int, int]] | None = None,
    period_ms: int = 1000,
) -> MissedFires:
    """Per job, the ``period_ms``-spaced times between its first and last scheduled fire in
    ``[since_ms, until_ms]`` that have no execution; those inside the job's ``excused``
    window are counted apart. Meant for jobs that fire every ``period_ms`` (``* * * * * *``
    is 1000): for other schedules the result means nothing."""
    times = fire_times_by_job(db, since_ms=since_ms, until_ms=until_ms)
    return split_missed_fires(times, excused=excused, period_ms=period_ms)
