"""``/metrics``: members by state, heartbeat ages, outcomes, takeover latency, pending entries
and dead letters, read from real Redis and SQL at scrape time; a source down is reported."""

from __future__ import annotations

from pathlib import Path

import redis
from anyio.from_thread import start_blocking_portal
from prometheus_client.parser import text_string_to_metric_families

from schemas.keys import GROUP_COMMANDS, GROUP_TAKEOVER
from tests.cluster import new_uuid
from tests.manager_fixtures import KEYS, Api, ClusterView, add_job, manager_settings
from tests.test_manager_api import closed_port
from workers.bus.streams import dead_letter
from workers.manager.app import create_app
from workers.store import Store, record_recovery, record_takeover

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Api, **kw: object) -> Samples:
    response = api.get("/metrics", **kw)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def takeover(store: Store, pid: str, outcome: str | None, late_ms: int | None) -> None:
    decided = None if late_ms is None else 10_000 + late_ms
    record_takeover(
        store,
        proposal_id=pid,
        dead_uuid=new_uuid(),
        policy="any",
        proposed_ms=9_000,
        due_ms=10_000,
        decided_ms=decided,
        outcome=outcome,
    )


def pend(r: redis.Redis, stream: str, group: str, n: int) -> None:
    """``n`` entries delivered to ``group`` and not acknowledged."""
    for _ in range(n):
        r.xadd(stream, {"m": b"x"})
    r.xgroup_create(stream, group, id="0", mkstream=True)
    r.xreadgroup(group, "someone", {stream: ">"})


def test_metrics_of_a_cluster(
    api: Api, cluster_view: ClusterView, store: Store, r: redis.Redis
) -> None:
    a, b = cluster_view.beat("alpha"), cluster_view.beat("bravo")
    c = cluster_view.beat("charlie")
    cluster_view.kill(c)
    add_job(store, a, "j1")
    add_job(store, a, "j2")
    orphan = new_uuid()
    add_job(store, orphan, "j3")
    takeover(store, "t1", "committed", 30)
    takeover(store, "t2", "committed", 2_000)
    takeover(store, "t3", "held", 0)
    takeover(store, "t4", None, None)
    takeover(store, "t5", "manual", 0)
    for pid, outcome in (("r1", "committed"), ("r2", "no_destination"), ("r3", "committed")):
        record_recovery(
            store,
            proposal_id=pid,
            dead_uuid=c,
            policy="any",
            proposed_ms=1,
            due_ms=2,
            outcome=outcome,
        )
    pend(r, KEYS.takeover, GROUP_TAKEOVER, 2)
    pend(r, KEYS.commands(a), GROUP_COMMANDS, 1)
    for _ in range(3):
        dead_letter(r, KEYS, origin_stream=KEYS.heartbeats, entry_id=None, raw=b"?", reason="bad")
    r.hset(KEYS.takeover_held, "t3", "most members silent")

    m = scrape(api, token="read-token-for-tests")
    assert value(m, "qwc_source_up", source="redis") == 1
    assert value(m, "qwc_source_up", source="store") == 1
    states = {"active": 2, "inactive": 0, "dead": 1, "unknown": 1}
    assert {s: value(m, "qwc_members", state=s) for s in states} == states
    ages = {
        dict(labels)["uuid"]: v
        for (name, labels), v in m.items()
        if name == "qwc_member_heartbeat_age_seconds"
    }
    assert set(ages) == {a, b, c} and all(0 <= age < 60 for age in ages.values())
    assert 0 <= value(m, "qwc_member_heartbeat_age_max_seconds") <= max(ages[a], ages[b])
    assert value(m, "qwc_member_jobs", uuid=a, name="alpha") == 2
    assert value(m, "qwc_member_jobs", uuid=orphan, name="") == 1
    assert value(m, "qwc_takeovers", outcome="committed") == 2
    assert value(m, "qwc_takeovers", outcome="pending") == 1
    assert value(m, "qwc_takeovers", outcome="manual") == 1
    assert value(m, "qwc_takeovers", outcome="cancelled") == 0
    assert value(m, "qwc_recoveries", outcome="committed") == 2
    assert value(m, "qwc_recoveries", outcome="no_destination") == 1
    h = "qwc_takeover_latency_seconds"
    assert value(m, f"{h}_bucket", le="0.05") == 1
    assert value(m, f"{h}_bucket", le="1.0") == 1
    assert value(m, f"{h}_bucket", le="2.5") == 2
    assert value(m, f"{h}_bucket", le="+Inf") == 2
    assert value(m, f"{h}_count") == 2 and abs(value(m, f"{h}_sum") - 2.03) < 1e-9
    assert value(m, "qwc_stream_pending_entries", stream="takeover", group="takeover") == 2
    assert value(m, "qwc_stream_pending_entries", stream=f"commands:{a}", group="commands") == 1
    assert value(m, "qwc_stream_pending_entries", stream="heartbeats", group="liveness") == 0
    assert value(m, "qwc_dead_letters") == 3
    assert value(m, "qwc_takeovers_held") == 1


def test_metrics_are_read_at_each_scrape(
    api: Api, cluster_view: ClusterView, r: redis.Redis
) -> None:
    a = cluster_view.beat("alpha")
    assert value(scrape(api), "qwc_members", state="active") == 1
    cluster_view.kill(a)
    after = scrape(api)
    assert value(after, "qwc_members", state="active") == 0
    assert value(after, "qwc_members", state="dead") == 1
    assert value(after, "qwc_member_heartbeat_age_max_seconds") == 0  # only dead members


def test_a_source_down_is_reported_and_the_rest_still_scraped(
    r: redis.Redis, store: Store, redis_url: str, db_url: str, tmp_path: Path
) -> None:
    takeover(store, "t1", "committed", 10)
    no_redis = manager_settings(f"redis://127.0.0.1:{closed_port()}/0", db_url, tmp_path)
    no_store = manager_settings(
        redis_url, f"postgresql+psycopg://u:pw@127.0.0.1:{closed_port()}/x", tmp_path
    )
    with start_blocking_portal() as portal:
        apis = [
            Api(create_app(no_redis, store=store), no_redis, portal),
            Api(create_app(no_store, client=r), no_store, portal),
        ]
        redis_down, store_down = (scrape(api) for api in apis)
        for api in apis:
            portal.call(api.client.aclose)
    assert value(redis_down, "qwc_source_up", source="redis") == 0
    assert value(redis_down, "qwc_source_up", source="store") == 1
    assert value(redis_down, "qwc_takeovers", outcome="committed") == 1
    assert not names(redis_down) & {"qwc_members", "qwc_dead_letters"}
    assert value(store_down, "qwc_source_up", source="store") == 0
    assert value(store_down, "qwc_dead_letters") == 0
    assert "qwc_members" in names(store_down) and "qwc_takeovers" not in names(store_down)
