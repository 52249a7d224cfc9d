"""Per-job metrics (``workers.manager.job_metrics``): the cap on per-job series and the
shaping in-process; the store's tally of an ``ended_ms`` range on the real store; the
counter settles what ended long enough ago (retention then lowers nothing); and
``/metrics`` of the app exposes the series after a few executions."""

from __future__ import annotations

import time

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tests.manager_fixtures import Api, add_job
from tests.test_manager_metrics import scrape, value
from workers.manager.job_metrics import (
    DURATION_BOUNDS_MS,
    LATENESS_BOUNDS_MS,
    OTHER,
    SETTLE_MS,
    JobCounter,
    JobFacts,
    assign_series,
    fold,
    grown,
    job_families,
)
from workers.store import (
    FireClaim,
    Store,
    claim_fires,
    finish_execution,
    insert_execution,
    start_execution,
)
from workers.store.job_stats import Histogram, JobTally, tally_ended
from workers.store.retention import delete_expired_executions

MEMBER = "aaaaaaaa-0000-4000-8000-000000000001"


def tally(statuses: dict[str, int], *, late_ms: int = 0, missed: int = 0) -> JobTally:
    n = sum(statuses.values())
    lateness = Histogram(
        LATENESS_BOUNDS_MS,
        tuple(n if late_ms <= b else 0 for b in LATENESS_BOUNDS_MS),
        n,
        n * late_ms,
    )
    return JobTally(
        statuses,
        Histogram(DURATION_BOUNDS_MS, (n,) * len(DURATION_BOUNDS_MS), n, 0),
        lateness,
        missed,
    )


def test_the_cap_gives_the_first_jobs_series_for_good_and_folds_the_others() -> None:
    assert assign_series([], ["c", "a", "b"], cap=2) == ["a", "b"]
    # a job with a series keeps it; newcomers only while under the cap
    assert assign_series(["b"], ["a", "b", "c"], cap=2) == ["b", "a"]
    assert assign_series(["b", "a"], ["0"], cap=2) == ["b", "a"]
    assert assign_series([], ["a"], cap=0) == []
    folded = fold(
        {"a": tally({"failed": 1}), "b": tally({"failed": 2}), "c": tally({"x": 3})}, ["a"]
    )
    assert folded.keys() == {"a", OTHER}
    assert folded[OTHER].statuses == {"failed": 2, "x": 3}


def test_missed_fires_grow_from_the_first_read_and_never_go_down() -> None:
    base = {"a": 5, "b": 1}
    assert grown(base, {}, {"a": 7, "b": 1, "new": 2}) == {"a": 2, "new": 2}
    # the job's row removed (retention) or read lower: what was reported stays
    assert grown(base, {"a": 2, "new": 2}, {"new": 1, "b": 0}) == {"a": 2, "new": 2}


def test_the_families_of_a_tally() -> None:
    facts = JobFacts(
        {"j1": tally({"succeeded": 2}, late_ms=300, missed=4), OTHER: tally({"failed": 1})},
        {"j1": "ops/backup"},
        other_jobs=3,
    )

    class Fixed(Collector):
        def collect(self) -> list[Metric]:  # type: ignore[override]
            return job_families(facts)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    j1 = 'job_id="j1",job_name="ops/backup"'
    other = 'job_id="_other",job_name="_other"'
    for line in (
        f'qwc_job_executions_total{{{j1},status="succeeded"}} 2.0',
        f'qwc_job_executions_total{{{j1},status="failed"}} 0.0',  # every final status
        f'qwc_job_executions_total{{{other},status="failed"}} 1.0',
        f'qwc_job_start_lateness_seconds_bucket{{{j1},le="0.25"}} 0.0',
        f'qwc_job_start_lateness_seconds_bucket{{{j1},le="0.5"}} 2.0',
        f"qwc_job_start_lateness_seconds_count{{{j1}}} 2.0",
        f"qwc_job_start_lateness_seconds_sum{{{j1}}} 0.6",
        f'qwc_job_execution_duration_seconds_bucket{{{j1},le="+Inf"}} 2.0',
        f"qwc_job_fires_missed_total{{{j1}}} 4.0",
        "qwc_job_series_other_jobs 3.0",
    ):
        assert line in text.splitlines(), (line, text)


def _ended(
    store: Store,
    job: str,
    *,
    fire_ms: int,
    start_ms: int | None,
    end_ms: int,
    status: str = "succeeded",
    trigger: str = "schedule",
    missed_ms: list[int] | None = None,
) -> str:
    """An execution fired at ``fire_ms``, started at ``start_ms`` (None: skipped at
    ``end_ms``) and ended at ``end_ms`` with ``status``."""
    skipped = start_ms is None
    e = insert_execution(
        store, job_id=job, member_uuid=MEMBER, trigger=trigger, fire_ms=fire_ms,
        now_ms=end_ms if skipped else fire_ms, status="skipped" if skipped else "scheduled",
        missed_ms=missed_ms,
    )  # fmt: skip
    if start_ms is not None:
        assert start_execution(store, e, now_ms=start_ms)
        assert finish_execution(store, e, status=status, now_ms=end_ms)
    return e


def test_the_store_tallies_an_ended_range(store: Store) -> None:
    a, b = add_job(store, MEMBER, "a"), add_job(store, MEMBER, "b")
    _ended(store, a, fire_ms=1_000, start_ms=1_040, end_ms=1_540)  # 40 ms late, 0.5 s
    _ended(store, a, fire_ms=2_000, start_ms=1_990, end_ms=9_990)  # early start: 0 late
    _ended(store, a, fire_ms=3_000, start_ms=None, end_ms=3_000, trigger="catchup",
           missed_ms=[1, 2, 3000])  # fmt: skip
    _ended(store, b, fire_ms=500, start_ms=600, end_ms=900)  # before the range
    _ended(store, b, fire_ms=20_000, start_ms=20_001, end_ms=20_002)  # after it
    got = tally_ended(
        store, from_ms=1_000, before_ms=20_002,
        duration_bounds_ms=(500, 5_000), lateness_bounds_ms=(10, 100),
    )  # fmt: skip
    assert got.keys() == {a}
    t = got[a]
    assert t.statuses == {"succeeded": 2, "skipped": 1}
    assert t.duration == Histogram((500, 5_000), (1, 1), count=2, sum_ms=8_500)
    assert t.lateness == Histogram((10, 100), (1, 2), count=2, sum_ms=40)
    assert t.missed == 3
    assert tally_ended(
        store, from_ms=20_002, before_ms=None, duration_bounds_ms=(), lateness_bounds_ms=()
    )[b].statuses == {"succeeded": 1}


def test_the_counter_settles_and_retention_lowers_nothing(store: Store) -> None:
    job = add_job(store, MEMBER, "a")
    counter = JobCounter(started_ms=10_000, cap=10)
    _ended(store, job, fire_ms=9_000, start_ms=9_100, end_ms=9_500)  # before the start
    _ended(store, job, fire_ms=10_000, start_ms=10_100, end_ms=11_000)
    now_ms = 11_000 + SETTLE_MS + 1
    first = counter.read(store, now_ms=now_ms)
    assert first.tallies[job].statuses == {"succeeded": 1}
    assert first.paths == {job: "p/g/a"}
    _ended(store, job, fire_ms=now_ms, start_ms=now_ms, end_ms=now_ms, status="failed")
    # an outcome written long after it ended, older than what is settled: not counted
    _ended(store, job, fire_ms=10_500, start_ms=10_600, end_ms=10_700)
    assert delete_expired_executions(store, ended_before_ms=now_ms - 1, limit=100) == 3
    later = counter.read(store, now_ms=now_ms + 1)
    assert later.tallies[job].statuses == {"succeeded": 1, "failed": 1}
    assert later.tallies[job].duration.count == 2


def test_metrics_expose_each_jobs_series_up_to_the_cap(make_api: object, store: Store) -> None:
    api: Api = make_api(metrics_max_job_series=1)  # type: ignore[operator]
    ids = {add_job(store, MEMBER, n): n for n in ("a", "b", "c")}
    a, b, c = sorted(ids)  # the first in id order gets the one series
    now_ms = time.time_ns() // 1_000_000
    for job in (a, a, b, c):
        _ended(store, job, fire_ms=now_ms, start_ms=now_ms + 20, end_ms=now_ms + 70)
    _ended(store, a, fire_ms=now_ms, start_ms=None, end_ms=now_ms + 1)

    def misfire(job: str, count: int, fire_ms: int) -> None:
        claim = FireClaim(job, 1, fire_ms, fire_ms + 1000, missed_fires=count)
        assert claim in claim_fires(store, [claim], member_uuid=MEMBER, now_ms=now_ms)

    misfire(a, 5, now_ms)  # before the manager's first scrape: its base
    m = scrape(api)
    own = {"job_id": a, "job_name": f"p/g/{ids[a]}"}
    other = {"job_id": OTHER, "job_name": OTHER}
    assert value(m, "qwc_job_executions_total", **own, status="succeeded") == 2
    assert value(m, "qwc_job_executions_total", **own, status="skipped") == 1
    assert value(m, "qwc_job_executions_total", **other, status="succeeded") == 2
    assert value(m, "qwc_job_start_lateness_seconds_count", **own) == 2
    assert value(m, "qwc_job_execution_duration_seconds_bucket", **own, le="0.1") == 2
    assert value(m, "qwc_job_series_other_jobs") == 2
    assert {dict(labels).get("job_id") for name, labels in m if name.startswith("qwc_job_")} == {
        a,
        OTHER,
        None,
    }
    assert value(m, "qwc_job_fires_misfired_total", **own) == 0
    misfire(a, 3, now_ms + 1)
    misfire(c, 2, now_ms + 1)
    m = scrape(api)
    assert value(m, "qwc_job_fires_misfired_total", **own) == 3
    assert value(m, "qwc_job_fires_misfired_total", **other) == 2
