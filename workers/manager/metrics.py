"""Prometheus metrics, read from Redis and the store at each scrape (no counter that drifts).

``ClusterCollector.collect`` reads two sets of facts — from Redis (the view, the pending
entries of each consumer group, the dead letters, the guard) and from the store (members,
jobs owned, audit outcomes, takeover lateness) — and ``families`` (pure) turns them into
metric families. A source that does not answer is reported by ``qwc_source_up`` = 0 and
its metrics are left out; the scrape itself still answers.

    qwc_source_up{source}                       1 when redis / store answered this scrape
    qwc_members{state}                          members by state (active, inactive, dead,
                                                unknown): the view merged with the store
    qwc_member_heartbeat_age_seconds{uuid,name} age of each member's last heartbeat
                                                (Redis clock); never-heard members absent
    qwc_member_heartbeat_age_max_seconds        the oldest last heartbeat of a member not dead
    qwc_member_jobs{uuid,name}                  jobs each member owns
    qwc_executions_running{member}              executions running on each member (store)
    qwc_executions_waiting{member}              executions due on each member, not started
                                                yet: every slot busy, or the member cut off
                                                from Redis or gone (store)
    qwc_takeovers{outcome}                      takeover proposals by outcome (pending:
                                                not decided yet); a gauge: an outcome such as
                                                held or no_destination can change later
    qwc_recoveries{outcome}                     recovery proposals by outcome, likewise
    qwc_takeover_latency_seconds                histogram over committed autotakeovers of
                                                decided_ms - due_ms: how late after its due
                                                time (proposed + autotakeover.delay) each was
                                                committed (manual takeovers not counted)
    qwc_stream_pending_entries{stream,group}    XPENDING of each consumer group (liveness,
                                                takeover, recovery, each member's commands)
    qwc_dead_letters                            XLEN of the dead-letter stream
    qwc_takeovers_held                          proposals the mass-failure guard holds
    qwc_notifications_delivered_total{receiver,outcome}
                                                deliveries to each webhook receiver by
                                                outcome: delivered, retried (an attempt
                                                failed, another follows), failed (given up)
                                                (receiver "job-hooks": the jobs' own
                                                webhooks, all jobs together)
    qwc_notifications_pending{receiver}         events not delivered to it yet (being sent,
                                                waiting for a retry, or not read yet)
    qwc_notifications_failed                    entries of the failed list
    qwc_job_executions_total{job_id,job_name,status}
                                                executions of each job that ended since
                                                this manager started, by final status
    qwc_job_execution_duration_seconds{job_id,job_name}
    qwc_job_start_lateness_seconds{job_id,job_name}
                                                histograms over those that started
    qwc_job_fires_missed_total{job_id,job_name} fire times catch-ups stood for
    qwc_job_series_other_jobs                   jobs over the cap, counted in job_id="_other"

The per-job families come from ``workers.manager.job_metrics`` (why "since this manager
started", and the cap on per-job series: see there).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from schemas.errors import EmbeddedRedisError, QwcError
from schemas.keys import GROUP_COMMANDS, GROUP_LIVENESS, GROUP_RECOVERY, GROUP_TAKEOVER, Keys
from schemas.tables import TAKEOVER_OUTCOMES
from workers.liveness import view
from workers.liveness.listing import member_rows
from workers.manager.job_metrics import JobCounter, JobFacts, job_families
from workers.manager.resources import Resources
from workers.notify.hooks import HOOK_COUNTS as JOB_HOOKS_RECEIVER
from workers.notify.status import NotifyFacts, read_notify_facts
from workers.store import Backlog, MemberRow, count_backlog, count_jobs_by_owner, list_members
from workers.store.audit import Lateness, count_outcomes, takeover_lateness

__all__ = ["LATENCY_BUCKETS_S", "ClusterCollector", "RedisFacts", "StoreFacts", "families"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MEMBER_STATES = ("active", "inactive", "dead", "unknown")
# Always exported (0 when none), so a dashboard's series exist before the first one.
RECOVERY_OUTCOMES = ("committed", "cancelled", "skipped", "no_destination")


@dataclass(frozen=True)
class RedisFacts:
    """What one scrape read from Redis."""

    snapshot: view.ViewSnapshot
    pending: dict[tuple[str, str], int]  # (stream name without prefix, group) -> entries
    dead_letters: int
    held: int
    notify: NotifyFacts | None = None


@dataclass(frozen=True)
class StoreFacts:
    """What one scrape read from the store."""

    members: list[MemberRow]
    jobs_owned: dict[str, int]
    takeovers: dict[str | None, int]
    recoveries: dict[str | None, int]
    lateness: Lateness
    backlog: dict[str, Backlog]
    jobs: JobFacts | None = None


def read_redis(client: redis.Redis, keys: Keys, receivers: Sequence[str] = ()) -> RedisFacts:
    """The view, then every group's pending count, the dead letters and the held
    proposals in one pipeline (a missing group counts 0), then where each webhook receiver
    of ``receivers`` (names) stands."""
    snap = view.read_snapshot(client, keys)
    groups = [
        (keys.heartbeats, GROUP_LIVENESS),
        (keys.takeover, GROUP_TAKEOVER),
        (keys.recovery, GROUP_RECOVERY),
    ] + [(keys.commands(u), GROUP_COMMANDS) for u in sorted(set(snap.seen_ms) | set(snap.states))]
    pipe = client.pipeline(transaction=False)
    for stream, group in groups:
        pipe.xpending(stream, group)
    pipe.xlen(keys.dead_letters)
    pipe.hlen(keys.takeover_held)
    *pendings, dead_letters, held = pipe.execute(raise_on_error=False)
    for reply in (dead_letters, held):
        if isinstance(reply, Exception):
            raise reply
    short = len(f"{{{keys.prefix}}}:")
    pending = {
        (stream[short:], group): int(reply["pending"])
        for (stream, group), reply in zip(groups, pendings, strict=True)
        if not isinstance(reply, Exception)  # NOGROUP: nobody consumes it yet
    }
    notify = read_notify_facts(client, keys, receivers)
    return RedisFacts(snap, pending, int(dead_letters), int(held), notify)


def read_store(res: Resources, counter: JobCounter | None = None) -> StoreFacts:
    """Members, jobs per owner, outcomes, takeover lateness and executions running and
    waiting per member: six aggregate reads; with ``counter``, the per-job tallies too
    (three more at most)."""
    store = res.store()
    now_ms = time.time_ns() // 1_000_000
    return StoreFacts(
        members=list_members(store),
        jobs_owned=count_jobs_by_owner(store),
        takeovers=count_outcomes(store, "takeovers"),
        recoveries=count_outcomes(store, "recoveries"),
        lateness=takeover_lateness(store, [round(b * 1000) for b in LATENCY_BUCKETS_S]),
        backlog=count_backlog(store, now_ms=now_ms),
        jobs=None if counter is None else counter.read(store, now_ms=now_ms),
    )


def families(redis_facts: RedisFacts | None, store_facts: StoreFacts | None) -> list[Metric]:
    """Pure: the metric families of one scrape (see the module docstring); a source that
    is None is reported down and its metrics left out."""
    up = GaugeMetricFamily(
        "qwc_source_up", "1 when the source answered this scrape", None, ["source"]
    )
    up.add_metric(["redis"], 0 if redis_facts is None else 1)
    up.add_metric(["store"], 0 if store_facts is None else 1)
    out: list[Metric] = [up]
    if redis_facts is not None:
        out += _member_families(redis_facts, store_facts)
        out += _redis_families(redis_facts)
    if store_facts is not None:
        out += _store_families(store_facts)
    return out


def _member_families(rf: RedisFacts, sf: StoreFacts | None) -> list[Metric]:
    snap = rf.snapshot
    rows = member_rows(
        now_ms=snap.now_ms,
        seen_ms=snap.seen_ms,
        states={u: s.value for u, s in snap.states.items()},
        heartbeats=view.decode_heartbeats(snap.info),
        store_members=sf.members if sf else [],
        jobs_owned=sf.jobs_owned if sf else {},
        backlog=sf.backlog if sf else {},
    )
    by_state = GaugeMetricFamily("qwc_members", "Members by state", labels=["state"])
    counts = Counter(str(r["state"]) for r in rows)
    for state in (*MEMBER_STATES, *sorted(set(counts) - set(MEMBER_STATES))):
        by_state.add_metric([state], counts.get(state, 0))
    age = GaugeMetricFamily(
        "qwc_member_heartbeat_age_seconds",
        "Age of each member's last heartbeat, on the Redis server's clock",
        labels=["uuid", "name"],
    )
    ages = [(r, float(r["age_s"])) for r in rows if r["age_s"] is not None]
    for r, age_s in ages:
        age.add_metric([r["uuid"], r["name"]], age_s)
    oldest = GaugeMetricFamily(
        "qwc_member_heartbeat_age_max_seconds",
        "The oldest last heartbeat among members not dead (0: none)",
        value=max((a for r, a in ages if r["state"] != "dead"), default=0.0),
    )
    out: list[Metric] = [by_state, age, oldest]
    if sf is not None:
        jobs = GaugeMetricFamily(
            "qwc_member_jobs", "Jobs each member owns", labels=["uuid", "name"]
        )
        for r in rows:
            jobs.add_metric([r["uuid"], r["name"]], r["jobs_owned"])
        out += [jobs, *_execution_families(rows)]
    return out


def _execution_families(rows: Sequence[dict[str, Any]]) -> list[Metric]:
    running = GaugeMetricFamily(
        "qwc_executions_running", "Executions running on each member", labels=["member"]
    )
    waiting = GaugeMetricFamily(
        "qwc_executions_waiting",
        "Executions due on each member and not started yet (every slot busy, or the member "
        "cut off or gone)",
        labels=["member"],
    )
    for r in rows:
        running.add_metric([r["uuid"]], r["executions_running"])
        waiting.add_metric([r["uuid"]], r["executions_waiting"])
    return [running, waiting]


def _redis_families(rf: RedisFacts) -> list[Metric]:
    pending = GaugeMetricFamily(
        "qwc_stream_pending_entries",
        "Entries delivered to a consumer group and not acknowledged yet (XPENDING)",
        labels=["stream", "group"],
    )
    for (stream, group), n in sorted(rf.pending.items()):
        pending.add_metric([stream, group], n)
    return [
        pending,
        GaugeMetricFamily("qwc_dead_letters", "Entries in the dead-letter stream", rf.dead_letters),
        GaugeMetricFamily(
            "qwc_takeovers_held", "Takeover proposals held by the mass-failure guard", rf.held
        ),
        *(_notify_families(rf.notify) if rf.notify is not None else []),
    ]


def _notify_families(nf: NotifyFacts) -> list[Metric]:
    delivered = CounterMetricFamily(
        "qwc_notifications_delivered",
        "Deliveries to each webhook receiver by outcome (delivered, retried, failed)",
        labels=["receiver", "outcome"],
    )
    pending = GaugeMetricFamily(
        "qwc_notifications_pending",
        "Events not delivered to each webhook receiver yet",
        labels=["receiver"],
    )
    for r in nf.receivers:
        for outcome, n in r.outcomes.items():
            delivered.add_metric([r.name, outcome], n)
        if r.undelivered is not None:
            pending.add_metric([r.name], r.undelivered)
    for outcome, n in nf.job_hooks.items():
        delivered.add_metric([JOB_HOOKS_RECEIVER, outcome], n)
    failed = GaugeMetricFamily(
        "qwc_notifications_failed", "Webhook deliveries given up (the failed list)", nf.failed
    )
    return [delivered, pending, failed]


def _outcomes(name: str, doc: str, counts: dict[str | None, int], known: Sequence[str]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["outcome"])
    named = {("pending" if k is None else k): v for k, v in counts.items()}
    for outcome in sorted({"pending", *known} | set(named)):
        family.add_metric([outcome], named.get(outcome, 0))
    return family


def _store_families(sf: StoreFacts) -> list[Metric]:
    late = sf.lateness
    buckets: list[tuple[str, float]] = [
        (repr(b_ms / 1000), float(c))
        for b_ms, c in zip(late.bounds_ms, late.cumulative, strict=True)
    ]
    buckets.append(("+Inf", float(late.count)))
    latency = HistogramMetricFamily(
        "qwc_takeover_latency_seconds",
        "Committed autotakeovers: seconds from due (proposed + autotakeover.delay) to commit",
        buckets=buckets,
        sum_value=late.sum_ms / 1000,
    )
    return [
        _outcomes(
            "qwc_takeovers", "Takeover proposals by outcome", sf.takeovers, TAKEOVER_OUTCOMES
        ),
        _outcomes(
            "qwc_recoveries", "Recovery proposals by outcome", sf.recoveries, RECOVERY_OUTCOMES
        ),
        latency,
        *(job_families(sf.jobs) if sf.jobs is not None else []),
    ]


class ClusterCollector(Collector):
    """Collects ``families`` from the app's Redis client and store at each scrape."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.jobs = JobCounter(
            started_ms=time.time_ns() // 1_000_000,
            cap=resources.settings.metrics_max_job_series,
        )

    def collect(self) -> Iterator[Metric]:
        res = self.resources
        redis_facts: RedisFacts | None = None
        store_facts: StoreFacts | None = None
        try:
            receivers = [w.name for w in res.settings.notification_webhooks]
            redis_facts = read_redis(res.redis(), res.keys, receivers)
        except (redis.RedisError, EmbeddedRedisError) as exc:
            log.warning("metrics: Redis did not answer: %s", exc)
        try:
            store_facts = read_store(res, self.jobs)
        except (QwcError, SQLAlchemyError, OSError) as exc:
            log.warning("metrics: the store did not answer: %s", _first_line(exc))
        yield from families(redis_facts, store_facts)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
