"""The manager's JSON API in-process (httpx ASGITransport) on real Redis and SQL: every
``/api/cluster`` route answers what the CLI's functions compute, and its errors are JSON."""

from __future__ import annotations

import socket
from pathlib import Path

import redis
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner

from tests.cluster import new_uuid
from tests.manager_fixtures import (
    KEYS,
    Api,
    ClusterView,
    add_execution,
    add_job,
    manager_settings,
)
from workers.cli.main import cli
from workers.jobs import execution_detail_json, execution_json, job_json
from workers.liveness.listing import collect_member_rows
from workers.manager.app import create_app
from workers.recovery.history import recovery_json
from workers.store import (
    Store,
    finish_execution,
    get_execution,
    get_job,
    list_commands,
    list_executions,
    list_jobs,
    list_recoveries,
    record_recovery,
)
from workers.takeover.history import takeover_history

C = "/api/cluster"


def without_age(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in row.items() if k != "age_s"} for row in rows]


def test_members_are_the_rows_of_qwc_members(
    api: Api, cluster_view: ClusterView, r: redis.Redis, store: Store
) -> None:
    a = cluster_view.beat("alpha", tags=("blue", "eu"), running=("e1", "e2"))
    b = cluster_view.beat("bravo", passive=True)
    orphan = new_uuid()  # owns jobs, never heard: known through the store only
    add_job(store, a, "j1")
    add_job(store, orphan, "j2")
    cluster_view.kill(b)
    body = api.ok("GET", f"{C}/members")
    assert without_age(body) == without_age(collect_member_rows(r, store, KEYS))
    rows = {m["uuid"]: m for m in body}
    assert rows[a]["state"] == "active" and rows[b]["state"] == "dead"
    assert rows[a]["tags"] == ["blue", "eu"] and rows[a]["running"] == 2
    assert rows[a]["jobs_owned"] == 1 and rows[a]["passive"] is False
    assert rows[b]["passive"] is True and rows[b]["jobs_owned"] == 0
    assert rows[orphan]["state"] == "unknown" and rows[orphan]["last_seen"] is None
    assert rows[a]["age_s"] >= 0 and rows[a]["last_seen"].endswith("+00:00")


def test_one_member_and_its_jobs(api: Api, cluster_view: ClusterView, store: Store) -> None:
    a = cluster_view.beat("alpha")
    mine = [add_job(store, a, f"j{i}") for i in range(3)]
    add_job(store, new_uuid(), "other")
    assert api.ok("GET", f"{C}/members/{a.upper()}")["uuid"] == a  # any case of the uuid
    jobs = api.ok("GET", f"{C}/members/{a}/jobs")
    assert sorted(j["id"] for j in jobs) == sorted(mine)
    assert jobs == [job_json(j) for j in list_jobs(store, owner_uuid=a)]


def test_unknown_member_is_404_and_a_bad_uuid_422(api: Api) -> None:
    for url in (f"{C}/members/{new_uuid()}", f"{C}/members/{new_uuid()}/jobs"):
        response = api.get(url)
        assert response.status_code == 404
        body = response.json()
        assert body["error"] is True and "unknown member" in body["message"]
        assert body["errorCode"] == "api.error.item.doesnotexist"
    bad = api.get(f"{C}/members/not-a-uuid")
    assert bad.status_code == 422
    assert "uuid" in bad.json()["message"] and bad.json()["detail"][0]["loc"][-1] == "uuid"


def test_jobs_filters_and_one_job(api: Api, store: Store) -> None:
    a, b = new_uuid(), new_uuid()
    j1 = add_job(store, a, "build", project="web")
    j2 = add_job(store, a, "deploy", project="web", group="")
    j3 = add_job(store, b, "build", project="db")
    every = api.ok("GET", f"{C}/jobs")
    assert every == [job_json(j) for j in list_jobs(store)]
    ids = lambda url: sorted(j["id"] for j in api.ok("GET", url))  # noqa: E731
    assert ids(f"{C}/jobs?owner={a}") == sorted([j1, j2])
    assert ids(f"{C}/jobs?project=db") == [j3]
    assert ids(f"{C}/jobs?name=build") == sorted([j1, j3])
    assert ids(f"{C}/jobs?owner={a}&name=build") == [j1]
    assert ids(f"{C}/jobs?group=") == [j2]
    assert ids(f"{C}/jobs?owner={new_uuid()}") == []
    one = api.ok("GET", f"{C}/jobs/{j3}")
    assert one["owner_uuid"] == b and one == job_json(get_job(store, j3))
    assert (one["executor"], one["timeout_s"], one["concurrency"]) == (
        {"kind": "command", "argv": ["true"]}, None, "forbid",
    )  # fmt: skip
    missing = api.get(f"{C}/jobs/{new_uuid()}")
    assert missing.status_code == 404 and "does not exist" in missing.json()["message"]
    assert api.get(f"{C}/jobs?owner=nope").status_code == 422


def test_executions_filters_and_one_execution(api: Api, store: Store) -> None:
    a, b = new_uuid(), new_uuid()
    job_a, job_b = add_job(store, a, "ja"), add_job(store, b, "jb")
    e1 = add_execution(store, job_a, a, "running")
    e2 = add_execution(store, job_a, a, "failed")
    e3 = add_execution(store, job_b, b, "succeeded")
    every = api.ok("GET", f"{C}/executions")
    assert every == [execution_json(e) for e in list_executions(store, limit=100)]
    ids = lambda url: sorted(e["id"] for e in api.ok("GET", url))  # noqa: E731
    assert ids(f"{C}/executions?job={job_a}") == sorted([e1, e2])
    assert ids(f"{C}/executions?member={b}") == [e3]
    assert ids(f"{C}/executions?status=running&status=succeeded") == sorted([e1, e3])
    assert len(api.ok("GET", f"{C}/executions?limit=1")) == 1
    assert api.ok("GET", f"{C}/executions/{e2}")["status"] == "failed"
    assert all("output" not in e for e in every)  # lists stay small: output in one only
    finish_execution(
        store, e1, status="timedout", now_ms=5, output="head\n[... 7 bytes of output dropped ...]"
        "\ntail", reason="timed out after 1 s",
    )  # fmt: skip
    one = api.ok("GET", f"{C}/executions/{e1}")
    assert one == execution_detail_json(get_execution(store, e1))
    assert (one["status"], one["reason"]) == ("timedout", "timed out after 1 s")
    assert one["output"].endswith("dropped ...]\ntail")
    assert api.get(f"{C}/executions/{new_uuid()}").status_code == 404
    assert api.get(f"{C}/executions?status=bogus").status_code == 422
    assert api.get(f"{C}/executions?limit=0").status_code == 422


def test_manual_takeover_spreads_a_dead_members_jobs_and_is_in_the_history(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    a, b = cluster_view.beat("alpha"), cluster_view.beat("bravo")
    gone = cluster_view.beat("gone")
    jobs = [add_job(store, gone, f"j{i}") for i in range(4)]
    cluster_view.kill(gone)
    answer = api.ok("POST", f"{C}/takeovers", json={"from": gone})
    assert answer["success"] is True
    assert answer["takeoverSchedule"]["server"] == {"uuid": gone}
    moved = answer["takeoverSchedule"]["jobs"]
    assert moved["total"] == 4 and moved["failed"] == []
    assert sorted(m["id"] for m in moved["successful"]) == sorted(jobs)
    assert {m["previous-owner"] for m in moved["successful"]} == {gone}
    owners = sorted(j.owner_uuid for j in list_jobs(store))
    assert owners == sorted([a, a, b, b])
    history = api.ok("GET", f"{C}/takeovers")
    assert history == takeover_history(store)
    assert [(h["dead_uuid"], h["outcome"], h["jobs_moved"]) for h in history] == [
        (gone, "manual", 4)
    ]
    assert api.ok("GET", f"{C}/takeovers?member={a}") == []


def test_manual_takeover_all_to_one_member_narrowed(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    a, b = cluster_view.beat("alpha"), cluster_view.beat("bravo")
    keep = add_job(store, b, "keep", project="other")
    one = add_job(store, b, "one", project="web")
    two = add_job(store, new_uuid(), "two", project="web")
    body = {"all": True, "to": a, "project": "web", "jobs": [one]}
    answer = api.ok("POST", f"{C}/takeovers", json=body)
    assert answer["takeoverSchedule"]["server"] == {"all": True}
    assert answer["self"]["server"]["uuid"] == a
    assert [m["id"] for m in answer["takeoverSchedule"]["jobs"]["successful"]] == [one]
    owners = {j.id: j.owner_uuid for j in list_jobs(store)}
    assert owners[one] == a and owners[keep] == b and owners[two] != a


def test_manual_takeover_errors(api: Api, cluster_view: ClusterView, store: Store) -> None:
    a = cluster_view.beat("alpha")
    dead = cluster_view.beat("dead")
    add_job(store, dead, "j")
    cluster_view.kill(dead)
    cases = [
        ({"from": new_uuid()}, 404, "unknown member"),
        ({"from": dead, "to": new_uuid()}, 404, "unknown member"),
        ({"from": a, "to": dead}, 409, "is dead"),
        ({"from": a, "to": a}, 409, "its own jobs"),
        ({"from": dead, "jobs": [new_uuid()]}, 404, "does not exist"),
        ({}, 422, "exactly one of from"),
        ({"from": dead, "all": True}, 422, "exactly one of from"),
        ({"from": "nope"}, 422, "from"),
        ({"from": dead, "surprise": 1}, 422, "surprise"),
    ]
    for body, status, text in cases:
        response = api.post(f"{C}/takeovers", json=body)
        assert response.status_code == status, (body, response.text)
        assert text in response.json()["message"], (body, response.text)
    assert {j.owner_uuid for j in list_jobs(store)} == {dead}, "nothing moved"


def test_manual_takeover_without_a_receiver_is_409_with_the_answer(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    dead = cluster_view.beat("dead")
    add_job(store, dead, "j1")
    add_job(store, dead, "j2")
    cluster_view.kill(dead)
    response = api.post(f"{C}/takeovers", json={"from": dead})
    assert response.status_code == 409
    answer = response.json()
    assert answer["success"] is False and answer["takeoverSchedule"]["jobs"]["total"] == 2
    assert {j.owner_uuid for j in list_jobs(store)} == {dead}


def test_guard_state_and_release(api: Api, r: redis.Redis) -> None:
    assert api.ok("GET", f"{C}/guard") == {"held": {}, "released_at": None, "released_ms": None}
    r.hset(KEYS.takeover_held, mapping={"p1": "3 of 4 members silent", "p2": "same"})
    assert api.ok("GET", f"{C}/guard")["held"] == {"p1": "3 of 4 members silent", "p2": "same"}
    done = api.ok("POST", f"{C}/guard/release")
    assert done["held"] == 2 and done["released_at"].endswith("+00:00")
    assert int(r.get(KEYS.takeover_released) or 0) == done["released_ms"]
    assert api.ok("GET", f"{C}/guard")["released_ms"] == done["released_ms"]


def test_recoveries_are_the_rows_of_qwc_recoveries(api: Api, store: Store) -> None:
    dead = new_uuid()
    retry = {"execution": "e1", "job": "j1", "from": dead, "to": new_uuid(), "attempt": 2}
    record_recovery(
        store,
        proposal_id="r1",
        dead_uuid=dead,
        policy="any",
        proposed_ms=1_000,
        due_ms=2_000,
        decided_ms=2_100,
        outcome="committed",
        executions_marked=1,
        retries=[retry],
    )
    record_recovery(
        store, proposal_id="r2", dead_uuid=new_uuid(), policy="any", proposed_ms=5, due_ms=6
    )
    body = api.ok("GET", f"{C}/recoveries")
    assert body == [recovery_json(row) for row in list_recoveries(store)]
    assert [row["proposal_id"] for row in body] == ["r1", "r2"]
    mine = api.ok("GET", f"{C}/recoveries?member={dead}")
    assert [(m["outcome"], m["retried"], m["retries"]) for m in mine] == [("committed", 1, [retry])]


def test_run_a_job_on_a_member(
    api: Api, cluster_view: ClusterView, store: Store, r: redis.Redis
) -> None:
    a = cluster_view.beat("alpha")
    dead = cluster_view.beat("dead")
    cluster_view.kill(dead)
    job = add_job(store, a, "j")
    issued = api.ok("POST", f"{C}/jobs/{job}/run", 202, json={"on": a, "expires_s": 60})
    assert (issued["action"], issued["target_uuid"], issued["job_id"]) == ("execute", a, job)
    assert issued["expires_at_ms"] - issued["issued_at_ms"] == 60_000
    assert issued["issued_by"].startswith("qwc-manager:")
    (command,) = list_commands(store)
    assert (command.id, command.status, command.execution_id) == (
        issued["command_id"],
        "pending",
        issued["execution_id"],
    )
    assert r.xlen(KEYS.commands(a)) == 1
    default = api.ok("POST", f"{C}/jobs/{job}/run", 202)  # no body: the policy picks (owner)
    assert default["target_uuid"] == a
    assert api.post(f"{C}/jobs/{job}/run", json={"on": dead}).status_code == 409
    assert api.post(f"{C}/jobs/{job}/run", json={"on": new_uuid()}).status_code == 409
    assert api.post(f"{C}/jobs/{new_uuid()}/run").status_code == 404
    assert api.post(f"{C}/jobs/{job}/run", json={"expires_s": 0}).status_code == 422
    assert len(list_commands(store)) == 2


def test_abort_an_execution(
    api: Api, cluster_view: ClusterView, store: Store, r: redis.Redis
) -> None:
    a = cluster_view.beat("alpha")
    dead = cluster_view.beat("dead")
    cluster_view.kill(dead)
    job = add_job(store, a, "j")
    on_dead = add_execution(store, job, dead, "running")
    applied = api.ok("POST", f"{C}/executions/{on_dead}/abort")
    assert (applied["outcome"], applied["status"]) == ("applied", "aborted")
    assert get_execution(store, on_dead).status == "aborted"
    ended = api.post(f"{C}/executions/{on_dead}/abort")
    assert ended.status_code == 409 and ended.json()["outcome"] == "ended"
    on_live = add_execution(store, job, a, "running")
    sent = api.ok("POST", f"{C}/executions/{on_live}/abort", json={"expires_s": 5})
    assert sent["outcome"] == "sent" and sent["member_uuid"] == a
    assert r.xlen(KEYS.commands(a)) == 1
    issued = api.ok("POST", f"{C}/jobs/{job}/run", 202, json={"on": a})
    cancelled = api.ok("POST", f"{C}/executions/{issued['execution_id']}/abort")
    assert cancelled["outcome"] == "cancelled"
    assert api.post(f"{C}/executions/{new_uuid()}/abort").status_code == 404


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_redis_down_answers_503(store: Store, db_url: str, tmp_path: Path) -> None:
    settings = manager_settings(f"redis://127.0.0.1:{closed_port()}/0", db_url, tmp_path)
    with start_blocking_portal() as portal:
        down = Api(create_app(settings, store=store), settings, portal)
        for url in (
            f"{C}/members",
            f"{C}/guard",
            "/api/14/scheduler/server/" + new_uuid() + "/jobs",
        ):
            response = down.get(url)
            assert response.status_code == 503, url
            assert response.json()["message"].startswith("Redis is unavailable")
        assert down.post(f"{C}/guard/release").status_code == 503
        assert down.get(f"{C}/jobs").status_code == 200  # the store alone still answers
        portal.call(down.client.aclose)


def test_store_down_answers_503(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://qwc:secret@127.0.0.1:{closed_port()}/qwc"
    settings = manager_settings(redis_url, url, tmp_path)
    with start_blocking_portal() as portal:
        down = Api(create_app(settings, client=r), settings, portal)
        for path in (f"{C}/members", f"{C}/jobs", f"{C}/takeovers", f"{C}/recoveries"):
            response = down.get(path)
            assert response.status_code == 503, path
            body = response.json()
            assert body["message"].startswith("the store is unavailable"), body
            assert "secret" not in response.text
        assert down.get(f"{C}/guard").status_code == 200  # Redis alone still answers
        portal.call(down.client.aclose)


def test_the_cli_shares_the_takeover_checks_and_the_release(
    api: Api, cluster_view: ClusterView, store: Store, r: redis.Redis, redis_url: str, db_url: str
) -> None:
    """``qwc takeover`` / ``qwc takeover release`` call the functions the API calls."""
    a = cluster_view.beat("alpha")
    env = {"QWC_REDIS_URL": redis_url, "QWC_DATABASE_URL": db_url}

    def qwc(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.output

    unknown = new_uuid()
    assert qwc("takeover", "--from", unknown) == (
        2,
        f"qwc: unknown member {unknown} (from): no heartbeat, record or job\n",
    )
    assert qwc("takeover", "--from", a, "--to", a)[0] == 2
    r.hset(KEYS.takeover_held, "p1", "why")
    code, out = qwc("takeover", "release")
    assert code == 0 and out.endswith(": 1 held proposal(s) will proceed\n")
    assert api.ok("GET", f"{C}/guard")["released_ms"] == int(r.get(KEYS.takeover_released) or 0)


def test_text_no_database_can_store_is_refused_not_a_500(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    """Lone surrogates (escaped in JSON), invalid UTF-8 and NUL in URLs: never a 5xx (a 4xx,
    or for undecodable query bytes, Starlette's replacement characters matching nothing)."""
    add_job(store, cluster_view.beat("a"), "j")
    json_headers = {"content-type": "application/json"}
    cases = [
        ("PUT", "/api/17/scheduler/takeover", rb'{"server": {"all": true}, "project": "\ud800"}'),
        ("PUT", "/api/17/scheduler/takeover", rb'{"job": {"id": "\udfff"}}'),
        ("PUT", "/api/17/scheduler/takeover", rb'{"job": {"id": "a\u0000"}}'),
        ("POST", f"{C}/takeovers", rb'{"all": true, "project": "\ud800"}'),
        ("POST", f"{C}/takeovers", rb'{"all": true, "jobs": ["\ud800"]}'),
        ("POST", f"{C}/jobs/%ED%A0%80/run", b"{}"),
        ("GET", f"{C}/jobs?project=%ED%A0%80", None),
        ("GET", f"{C}/jobs?name=a%00b", None),
        ("GET", f"{C}/executions/%FF", None),
        ("GET", f"{C}/executions?job=%00", None),
    ]
    for method, url, body in cases:
        response = api.request(method, url, content=body, headers=json_headers)
        if url.endswith("?project=%ED%A0%80"):
            assert response.json() == [], response.text
        else:
            assert 400 <= response.status_code < 500, (method, url, response.text)
            assert response.json()["error"] is True
    assert {j.name for j in list_jobs(store)} == {"j"}
