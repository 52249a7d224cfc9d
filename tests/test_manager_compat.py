"""The compatible calls of the product the manager replaces: ``PUT /api/{v}/scheduler/takeover``
(the shapes of v14, v17 ``previous-owner``, v32 ``jobs``; its errors) and the two job lists,
in-process on real Redis and SQL; and the pure body parsing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cluster import new_uuid
from tests.manager_fixtures import Api, ClusterView, add_job
from workers.manager.compat import (
    EMPTY_REQUEST,
    BadRequest,
    CompatTakeover,
    parse_takeover_body,
    versioned_answer,
)
from workers.store import Store, list_jobs


def owners(store: Store) -> dict[str, str]:
    return {j.id: j.owner_uuid for j in list_jobs(store)}


@pytest.fixture
def dead_with_jobs(cluster_view: ClusterView, store: Store) -> tuple[str, str, list[str]]:
    """An active member, a dead one owning three jobs (project p) and one more (project q)."""
    live = cluster_view.beat("live")
    dead = cluster_view.beat("dead")
    jobs = [add_job(store, dead, f"j{i}") for i in range(3)]
    jobs.append(add_job(store, dead, "other", project="q"))
    cluster_view.kill(dead)
    return live, dead, jobs


def test_v14_answer_has_no_previous_owner(
    api: Api, dead_with_jobs: tuple[str, str, list[str]], store: Store
) -> None:
    live, dead, jobs = dead_with_jobs
    answer = api.ok("PUT", "/api/14/scheduler/takeover", json={"server": {"uuid": dead}})
    assert set(answer) == {"success", "message", "self", "takeoverSchedule"}
    assert answer["success"] is True and answer["message"]
    assert answer["self"] == {"server": {"uuid": None}}  # this manager is no member
    schedule = answer["takeoverSchedule"]
    assert schedule["server"] == {"uuid": dead} and "project" not in schedule
    assert schedule["jobs"]["total"] == 4 and schedule["jobs"]["failed"] == []
    assert sorted(schedule["jobs"]["successful"], key=lambda j: j["id"]) == [
        {"id": j} for j in sorted(jobs)
    ]
    assert set(owners(store).values()) == {live}


def test_v17_successful_jobs_carry_previous_owner(
    api: Api, dead_with_jobs: tuple[str, str, list[str]], store: Store
) -> None:
    live, dead, jobs = dead_with_jobs
    body = {"server": {"uuid": dead}, "project": "p"}
    answer = api.ok("PUT", "/api/17/scheduler/takeover", json=body)
    schedule = answer["takeoverSchedule"]
    assert schedule["project"] == "p"
    assert sorted(schedule["jobs"]["successful"], key=lambda j: j["id"]) == [
        {"id": j, "previous-owner": dead} for j in sorted(jobs[:3])
    ]
    assert owners(store) == {**dict.fromkeys(jobs[:3], live), jobs[3]: dead}  # not project q


def test_v32_honours_the_jobs_list_and_v31_ignores_it(
    api: Api, dead_with_jobs: tuple[str, str, list[str]], store: Store
) -> None:
    live, dead, jobs = dead_with_jobs
    listed = {"jobs": [{"id": jobs[0]}, {"id": jobs[1]}]}
    before = api.put("/api/31/scheduler/takeover", json=listed)
    assert before.status_code == 400 and before.json()["message"] == EMPTY_REQUEST
    assert set(owners(store).values()) == {dead}
    answer = api.ok("PUT", "/api/31/scheduler/takeover", json={**listed, "job": {"id": jobs[2]}})
    assert [j["id"] for j in answer["takeoverSchedule"]["jobs"]["successful"]] == [jobs[2]]
    answer = api.ok("PUT", "/api/32/scheduler/takeover", json=listed)
    assert answer["takeoverSchedule"]["server"] == {"all": True}
    moved = sorted(j["id"] for j in answer["takeoverSchedule"]["jobs"]["successful"])
    assert moved == sorted(jobs[:2])
    assert owners(store) == {jobs[0]: live, jobs[1]: live, jobs[2]: live, jobs[3]: dead}


def test_server_all_with_a_project(
    api: Api, dead_with_jobs: tuple[str, str, list[str]], store: Store
) -> None:
    live, dead, jobs = dead_with_jobs
    answer = api.ok(
        "PUT", "/api/17/scheduler/takeover", json={"server": {"all": True}, "project": "q"}
    )
    assert answer["takeoverSchedule"]["server"] == {"all": True}
    assert answer["takeoverSchedule"]["jobs"]["successful"] == [
        {"id": jobs[3], "previous-owner": dead}
    ]
    assert owners(store) == {**dict.fromkeys(jobs[:3], dead), jobs[3]: live}


def test_a_manager_with_a_member_takes_the_jobs_itself(
    make_api: Callable[..., Api], cluster_view: ClusterView, store: Store
) -> None:
    me = cluster_view.beat("me")
    other = cluster_view.beat("other")
    dead = cluster_view.beat("dead")
    jobs = [add_job(store, dead, f"j{i}") for i in range(4)]
    cluster_view.kill(dead)
    api = make_api(server_uuid=me)
    answer = api.ok("PUT", "/api/17/scheduler/takeover", json={"server": {"uuid": dead}})
    assert answer["self"] == {"server": {"uuid": me}}
    assert set(owners(store).values()) == {me} and other != me
    assert len(answer["takeoverSchedule"]["jobs"]["successful"]) == len(jobs)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", EMPTY_REQUEST),
        (b"{}", EMPTY_REQUEST),
        (b'{"server": {}, "project": "p"}', EMPTY_REQUEST),
        (b'{"server": {"all": false}}', EMPTY_REQUEST),
        (b"not json", "the request body is not JSON"),
        (b"[1, 2]", "the request body must be a JSON object"),
        (b'{"server": {"uuid": "nope"}}', "server.uuid is not a UUID: 'nope'"),
        (b'{"server": {"uuid": 7}}', "server.uuid must be a string"),
        (b'{"server": "x"}', "server must be an object"),
        (b'{"job": {"id": 7}}', "job.id must be a string"),
    ],
)
def test_bad_bodies_answer_400(api: Api, body: bytes, message: str) -> None:
    response = api.put("/api/14/scheduler/takeover", content=body)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": True,
        "errorCode": "api.error.invalid.request",
        "message": message,
        "apiversion": 14,
    }


def test_takeover_errors_of_the_cluster(
    api: Api, dead_with_jobs: tuple[str, str, list[str]], store: Store
) -> None:
    old = api.put("/api/13/scheduler/takeover", json={"server": {"all": True}})
    assert old.status_code == 400
    assert old.json()["errorCode"] == "api.error.api-version.unsupported"
    assert old.json()["apiversion"] == 13 and "minimum is 14" in old.json()["message"]
    unknown = api.put("/api/17/scheduler/takeover", json={"server": {"uuid": new_uuid()}})
    assert unknown.status_code == 404 and "unknown member" in unknown.json()["message"]
    no_job = api.put("/api/17/scheduler/takeover", json={"job": {"id": new_uuid()}})
    assert no_job.status_code == 404 and "does not exist" in no_job.json()["message"]
    assert api.put("/api/x/scheduler/takeover", json={}).status_code == 422
    assert set(owners(store).values()) == {dead_with_jobs[1]}, "nothing moved"


def test_takeover_without_a_receiver_is_409(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    dead = cluster_view.beat("dead")
    add_job(store, dead, "j")
    cluster_view.kill(dead)
    response = api.put("/api/17/scheduler/takeover", json={"server": {"uuid": dead}})
    assert response.status_code == 409
    assert response.json()["success"] is False
    assert response.json()["takeoverSchedule"]["jobs"]["failed"] == [
        {"id": list_jobs(store)[0].id, "previous-owner": dead}
    ]


def test_the_jobs_of_this_managers_member(
    make_api: Callable[..., Api], cluster_view: ClusterView, store: Store
) -> None:
    me = cluster_view.beat("me")
    mine = add_job(store, me, "mine", group="")
    add_job(store, new_uuid(), "theirs")
    nobody = make_api().get("/api/14/scheduler/jobs")
    assert nobody.status_code == 404 and "qwcontrol.server.uuid" in nobody.json()["message"]
    assert nobody.json()["apiversion"] == 14
    (job,) = make_api(server_uuid=me).ok("GET", "/api/14/scheduler/jobs")
    assert job == {
        "id": mine,
        "name": "mine",
        "group": None,
        "project": "p",
        "description": "",
        "scheduled": False,
        "scheduleEnabled": True,
        "enabled": True,
        "serverNodeUUID": me,
        "serverOwner": True,
    }


def test_the_jobs_of_a_member(api: Api, cluster_view: ClusterView, store: Store) -> None:
    a = cluster_view.beat("a")
    orphan = new_uuid()
    jobs = [add_job(store, orphan, f"j{i}", schedule="* * * * *") for i in range(2)]
    add_job(store, a, "not these")
    listed = api.ok("GET", f"/api/18/scheduler/server/{orphan}/jobs")
    assert sorted(j["id"] for j in listed) == sorted(jobs)
    assert {(j["serverNodeUUID"], j["serverOwner"], j["scheduled"]) for j in listed} == {
        (orphan, False, True)
    }
    assert api.ok("GET", f"/api/14/scheduler/server/{a}/jobs")[0]["name"] == "not these"
    assert api.get(f"/api/14/scheduler/server/{new_uuid()}/jobs").status_code == 404
    assert api.get("/api/14/scheduler/server/nope/jobs").status_code == 422
    assert api.get(f"/api/12/scheduler/server/{a}/jobs").status_code == 400


def test_parse_takeover_body() -> None:
    u = new_uuid()
    assert parse_takeover_body({"server": {"uuid": u.upper()}}, 14) == CompatTakeover(u, None, ())
    assert parse_takeover_body({"server": {"all": "true"}, "project": "p"}, 14) == CompatTakeover(
        None, "p", ()
    )
    assert parse_takeover_body({"server": {"uuid": u, "all": True}}, 14).from_uuid is None
    both = {"job": {"id": "a"}, "jobs": [{"id": "b"}, {"id": "a"}]}
    assert parse_takeover_body(both, 32).job_ids == ("a", "b")
    assert parse_takeover_body(both, 31).job_ids == ("a",)
    for bad in (None, {}, {"jobs": [{"id": "b"}]}, {"server": {"all": "maybe"}}):
        with pytest.raises(BadRequest):
            parse_takeover_body(bad, 31)
    with pytest.raises(BadRequest, match="list"):
        parse_takeover_body({"jobs": {"id": "b"}}, 32)


def test_versioned_answer_strips_previous_owner_before_17() -> None:
    answer = {
        "success": True,
        "message": "m",
        "self": {"server": {"uuid": None}},
        "takeoverSchedule": {
            "server": {"all": True},
            "jobs": {"total": 1, "successful": [{"id": "j", "previous-owner": "o"}], "failed": []},
        },
    }
    assert versioned_answer(answer, 16, None)["takeoverSchedule"]["jobs"]["successful"] == [
        {"id": "j"}
    ]
    assert versioned_answer(answer, 17, "p")["takeoverSchedule"]["project"] == "p"
    assert answer["takeoverSchedule"]["jobs"]["successful"][0]["previous-owner"] == "o"
