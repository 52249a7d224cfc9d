"""Per-job tallies of ended executions, for the manager's ``/metrics``: one aggregate
statement over an ``ended_ms`` range (the ``ended_ms`` index), however many rows.

:func:`tally_ended` counts the executions of each job that ended in ``[from_ms, before_ms)``
by status, with two histograms over those that started — duration (``ended_ms -
started_ms``) and start lateness (``started_ms - fire_ms``, 0 when it started before its
fire time: members' clocks differ) — and the fire times a catch-up stood for (the length
of ``missed_ms``). :class:`JobTally` values add up (``+``), so tallies of adjacent ranges
make the tally of their union. All times are epoch ms.

:func:`missed_fires` reads each job's count of fire times that never ran
(``scheduled_jobs.missed_fires``, a total since the job was created).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal_column, select

from schemas.tables import executions as _e
from schemas.tables import scheduled_jobs
from workers.store._db import Db, reading
from workers.store.jobs import job_path

__all__ = ["Histogram", "JobTally", "job_paths", "missed_fires", "tally_ended"]


@dataclass(frozen=True)
class Histogram:
    """``cumulative[i]`` observations were at most ``bounds_ms[i]``; ``count`` in all,
    ``sum_ms`` their total."""

    bounds_ms: tuple[int, ...]
    cumulative: tuple[int, ...]
    count: int = 0
    sum_ms: int = 0

    @classmethod
    def empty(cls, bounds_ms: Sequence[int]) -> Histogram:
        return cls(tuple(bounds_ms), tuple(0 for _ in bounds_ms))

    def __add__(self, other: Histogram) -> Histogram:
        if self.bounds_ms != other.bounds_ms:
            raise ValueError("histograms with different buckets do not add up")
        return Histogram(
            self.bounds_ms,
            tuple(a + b for a, b in zip(self.cumulative, other.cumulative, strict=True)),
            self.count + other.count,
            self.sum_ms + other.sum_ms,
        )


@dataclass(frozen=True)
class JobTally:
    """One job's ended executions: how many by status, the duration and lateness of
    those that started, and the fire times the catch-ups among them stood for;
    ``misfired``: fire times of the job that never ran (from :func:`missed_fires`)."""

    statuses: dict[str, int]
    duration: Histogram
    lateness: Histogram
    missed: int = 0
    misfired: int = 0

    @classmethod
    def empty(
        cls, duration_bounds_ms: Sequence[int], lateness_bounds_ms: Sequence[int]
    ) -> JobTally:
        return cls({}, Histogram.empty(duration_bounds_ms), Histogram.empty(lateness_bounds_ms))

    def __add__(self, other: JobTally) -> JobTally:
        statuses = dict(self.statuses)
        for status, n in other.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
        return JobTally(
            statuses,
            self.duration + other.duration,
            self.lateness + other.lateness,
            self.missed + other.missed,
            self.misfired + other.misfired,
        )


def tally_ended(
    db: Db,
    *,
    from_ms: int,
    before_ms: int | None,
    duration_bounds_ms: Sequence[int],
    lateness_bounds_ms: Sequence[int],
) -> dict[str, JobTally]:
    """:class:`JobTally` of every job with an execution that ended in ``[from_ms,
    before_ms)`` (``before_ms`` None: no upper end), by job id; one grouped statement."""
    started = _e.c.started_ms.is_not(None)
    duration = _e.c.ended_ms - _e.c.started_ms
    raw_late = _e.c.started_ms - _e.c.fire_ms
    late = case((raw_late > 0, raw_late), else_=0)
    missed = case(
        (_e.c.trigger == "catchup", func.coalesce(func.json_array_length(_e.c.missed_ms), 0)),
        else_=0,
    )

    def histogram(value: ColumnElement[Any], bounds_ms: Sequence[int]) -> list[Any]:
        return [
            func.sum(case((started, value), else_=0)),
            *(func.sum(case((started & (value <= b), 1), else_=0)) for b in bounds_ms),
        ]

    # Grouped by an expression, not the column: SQLite would otherwise read the whole
    # (job_id, status) index in group order rather than the ended_ms range (0.3 s at 100k).
    job_id = _e.c.job_id.concat(literal_column("''")).label("job_id")
    where = [_e.c.ended_ms >= from_ms]
    if before_ms is not None:
        where.append(_e.c.ended_ms < before_ms)
    stmt = (
        select(
            job_id,
            _e.c.status,
            func.count(),
            func.sum(case((started, 1), else_=0)),
            func.sum(missed),
            *histogram(duration, duration_bounds_ms),
            *histogram(late, lateness_bounds_ms),
        )
        .where(*where)
        .group_by(job_id, _e.c.status)
    )
    nd = len(duration_bounds_ms)
    out: dict[str, JobTally] = {}
    with reading(db) as conn:
        for row in conn.execute(stmt):
            job_id, status, count, n_started, n_missed, *rest = row
            d_sum, d_cum = rest[0], rest[1 : 1 + nd]
            l_sum, l_cum = rest[1 + nd], rest[2 + nd :]
            tally = JobTally(
                {status: int(count)},
                Histogram(
                    tuple(duration_bounds_ms),
                    tuple(int(c or 0) for c in d_cum),
                    int(n_started or 0),
                    int(d_sum or 0),
                ),
                Histogram(
                    tuple(lateness_bounds_ms),
                    tuple(int(c or 0) for c in l_cum),
                    int(n_started or 0),
                    int(l_sum or 0),
                ),
                int(n_missed or 0),
            )
            previous = out.get(job_id)
            out[job_id] = tally if previous is None else previous + tally
    return out


def job_paths(db: Db, job_ids: Sequence[str]) -> dict[str, str]:
    """``PROJECT/[GROUP/]NAME`` of each of ``job_ids`` (deleted jobs too: their rows stay
    while executions refer to them); ids without a row are left out. One statement."""
    if not job_ids:
        return {}
    j = scheduled_jobs
    stmt = select(j.c.id, j.c.project, j.c.group_name, j.c.name).where(j.c.id.in_(job_ids))
    with reading(db) as conn:
        return {i: job_path(p, g, n) for i, p, g, n in conn.execute(stmt)}


def missed_fires(db: Db) -> dict[str, int]:
    """``scheduled_jobs.missed_fires`` of every job that missed any (deleted jobs too,
    while their rows stay), by job id. One statement."""
    j = scheduled_jobs
    stmt = select(j.c.id, j.c.missed_fires).where(j.c.missed_fires > 0)
    with reading(db) as conn:
        return {job_id: int(n) for job_id, n in conn.execute(stmt)}
