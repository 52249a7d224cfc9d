"""Per-job metrics: the executions of each job that ended since this manager started, by
status, with duration and start-lateness histograms and the fire times catch-ups stood for;
and the fire times of each job that never ran (misfires) since this manager's first scrape.

The store is the source (``workers.store.job_stats.tally_ended``: one aggregate statement
over an ``ended_ms`` range); the manager keeps only what makes a scrape cheap and a counter
monotonic:

* **since the manager started**: the counters start at 0 with the process, as any
  Prometheus counter does (``rate`` and ``increase`` handle the reset); several managers
  each count the same executions from their own start, each correct alone;
* **settled and fresh**: executions that ended more than :data:`SETTLE_MS` ago are added
  once to a running tally (so a scrape reads only the last few minutes, however long the
  history, and retention deleting old rows never lowers a counter); those that ended
  since are tallied again at each scrape. An outcome recorded (committed) more than
  :data:`SETTLE_MS` after its ``ended_ms`` — a member whose clock is that far behind the
  manager's, or that could not reach the store that long — is not counted;
* **a cap on per-job series** (``qwcontrol.metrics.maxJobSeries``): the first jobs this
  manager sees (in job id order within a scrape) get series of their own, up to the cap,
  for the life of the process; the executions of any other job are counted in the series
  ``job_id="_other"``. So a counter never moves between series;
* **missed fires** are a total per job in the store (``scheduled_jobs.missed_fires``, the
  members add to it when they claim a fire): the first scrape reads the totals as its
  base, and each scrape reports each job's growth since (:func:`grown`; never lowered, so
  a job row that retention removes takes nothing off a counter).

:func:`job_families` (pure) turns the tallies into metric families.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from schemas.tables import FINAL_EXECUTION_STATUSES
from workers.store._db import Db
from workers.store.job_stats import Histogram, JobTally, job_paths, missed_fires, tally_ended

__all__ = [
    "DURATION_BUCKETS_S",
    "LATENESS_BUCKETS_S",
    "OTHER",
    "SETTLE_MS",
    "JobCounter",
    "JobFacts",
    "assign_series",
    "fold",
    "grown",
    "job_families",
]

DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENESS_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
SETTLE_MS = 5 * 60_000
OTHER = "_other"
LABELS = ["job_id", "job_name"]


def _ms(bounds_s: Sequence[float]) -> tuple[int, ...]:
    return tuple(round(b * 1000) for b in bounds_s)


DURATION_BOUNDS_MS = _ms(DURATION_BUCKETS_S)
LATENESS_BOUNDS_MS = _ms(LATENESS_BUCKETS_S)


def empty_tally() -> JobTally:
    return JobTally.empty(DURATION_BOUNDS_MS, LATENESS_BOUNDS_MS)


def assign_series(series: Sequence[str], job_ids: Iterable[str], cap: int) -> list[str]:
    """Pure: ``series`` (the jobs that have series of their own, in the order they got
    them) with the jobs of ``job_ids`` that have none yet added in id order, while fewer
    than ``cap``."""
    out = list(series)
    have = set(out)
    for job_id in sorted(set(job_ids) - have):
        if len(out) >= cap:
            break
        out.append(job_id)
    return out


def fold(tallies: Mapping[str, JobTally], series: Iterable[str]) -> dict[str, JobTally]:
    """Pure: ``tallies`` by job id -> by series: the jobs of ``series`` keep theirs, every
    other job's is added into :data:`OTHER`."""
    own = set(series)
    out: dict[str, JobTally] = {}
    for job_id, tally in tallies.items():
        key = job_id if job_id in own else OTHER
        out[key] = out[key] + tally if key in out else tally
    return out


def add(a: Mapping[str, JobTally], b: Mapping[str, JobTally]) -> dict[str, JobTally]:
    """Pure: the sum of two tallies by series."""
    out = dict(a)
    for key, tally in b.items():
        out[key] = out[key] + tally if key in out else tally
    return out


def grown(
    base: Mapping[str, int], seen: Mapping[str, int], totals: Mapping[str, int]
) -> dict[str, int]:
    """Pure: how much each job's total grew past ``base`` (its total at the first read; 0
    for a job created since), given ``seen``, the growth reported before: never less."""
    out = dict(seen)
    for job_id, total in totals.items():
        growth = total - base.get(job_id, 0)
        if growth > out.get(job_id, 0):
            out[job_id] = growth
    return out


@dataclass(frozen=True)
class JobFacts:
    """What one scrape knows of the jobs: tallies by series (job id or :data:`OTHER`),
    the path of each job with a series, and how many jobs are counted in :data:`OTHER`."""

    tallies: dict[str, JobTally]
    paths: dict[str, str]
    other_jobs: int


class JobCounter:
    """The settled tally and the series of one manager (thread-safe: a scrape at a time).

    ``started_ms``: counting starts with executions ended then (epoch ms, this host's
    clock, as members write theirs); ``cap``: ``qwcontrol.metrics.maxJobSeries``."""

    def __init__(self, *, started_ms: int, cap: int) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._settled_until_ms = started_ms
        self._settled: dict[str, JobTally] = {}
        self._series: list[str] = []
        self._other: set[str] = set()
        self._missed_base: dict[str, int] | None = None
        self._missed: dict[str, int] = {}

    def read(self, db: Db, *, now_ms: int) -> JobFacts:
        """Settle what ended before ``now_ms - SETTLE_MS``, tally what ended since, the
        jobs' missed fires and the paths of the jobs with series: four statements at most."""
        with self._lock:
            until_ms = now_ms - SETTLE_MS
            if until_ms > self._settled_until_ms:
                newly = self._tally(db, self._settled_until_ms, until_ms)
                self._settled = add(self._settled, newly)
                self._settled_until_ms = until_ms
            fresh = self._tally(db, self._settled_until_ms, None)
            tallies = add(add(self._settled, fresh), self._misfired(db))
            paths = job_paths(db, [k for k in tallies if k != OTHER])
            return JobFacts(tallies, paths, len(self._other))

    def _tally(self, db: Db, from_ms: int, before_ms: int | None) -> dict[str, JobTally]:
        by_job = tally_ended(
            db,
            from_ms=from_ms,
            before_ms=before_ms,
            duration_bounds_ms=DURATION_BOUNDS_MS,
            lateness_bounds_ms=LATENESS_BOUNDS_MS,
        )
        return self._fold(by_job)

    def _misfired(self, db: Db) -> dict[str, JobTally]:
        totals = missed_fires(db)
        if self._missed_base is None:
            self._missed_base = totals
        self._missed = grown(self._missed_base, self._missed, totals)
        empty = empty_tally()
        by_job = {j: replace(empty, misfired=n) for j, n in self._missed.items() if n}
        return self._fold(by_job)

    def _fold(self, by_job: dict[str, JobTally]) -> dict[str, JobTally]:
        self._series = assign_series(self._series, by_job, self.cap)
        own = set(self._series)
        self._other |= {j for j in by_job if j not in own}
        return fold(by_job, own)


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    out = [(repr(b / 1000), float(c)) for b, c in zip(h.bounds_ms, h.cumulative, strict=True)]
    out.append(("+Inf", float(h.count)))
    return out


def job_families(facts: JobFacts) -> list[Metric]:
    """Pure: the per-job metric families of one scrape (docs/manager.md, "Metrics")."""
    executions = CounterMetricFamily(
        "qwc_job_executions",
        "Executions of each job that ended since this manager started, by final status",
        labels=[*LABELS, "status"],
    )
    duration = HistogramMetricFamily(
        "qwc_job_execution_duration_seconds",
        "Ended executions of each job that started: seconds from start to end",
        labels=LABELS,
    )
    lateness = HistogramMetricFamily(
        "qwc_job_start_lateness_seconds",
        "Ended executions of each job that started: seconds from fire time to start",
        labels=LABELS,
    )
    missed = CounterMetricFamily(
        "qwc_job_fires_missed",
        "Fire times of each job that catch-up executions (misfire fire_once) stood for",
        labels=LABELS,
    )
    misfired = CounterMetricFamily(
        "qwc_job_fires_misfired",
        "Fire times of each job that never ran (older than its misfire grace, or left by a "
        "previous owner with misfire skip), since this manager's first scrape",
        labels=LABELS,
    )
    other = GaugeMetricFamily(
        "qwc_job_series_other_jobs",
        'Jobs over qwcontrol.metrics.maxJobSeries counted in the job_id="_other" series',
        value=facts.other_jobs,
    )
    for key in sorted(facts.tallies):
        tally = facts.tallies[key]
        labels = [key, OTHER if key == OTHER else facts.paths.get(key, "")]
        statuses = (
            *FINAL_EXECUTION_STATUSES,
            *sorted(set(tally.statuses) - set(FINAL_EXECUTION_STATUSES)),
        )
        for status in statuses:
            executions.add_metric([*labels, status], tally.statuses.get(status, 0))
        duration.add_metric(labels, _buckets(tally.duration), tally.duration.sum_ms / 1000)
        lateness.add_metric(labels, _buckets(tally.lateness), tally.lateness.sum_ms / 1000)
        missed.add_metric(labels, tally.missed)
        misfired.add_metric(labels, tally.misfired)
    return [executions, duration, lateness, missed, misfired, other]
