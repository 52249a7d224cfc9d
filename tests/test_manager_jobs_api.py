"""Jobs through the manager's API, in-process on real Redis and SQL: create, replace, patch
and delete under ``/api/cluster/jobs``, the compatible calls of the product this replaces
(``DELETE /api/{v}/job/{id}``, schedule / execution enable / disable, the YAML import), and
what refuses them (JSON errors naming the field, the existing job, the member)."""

from __future__ import annotations

from pathlib import Path

import yaml  # type: ignore[import-untyped]

from tests.manager_fixtures import READ_TOKEN, Api, ClusterView, add_execution, add_job
from workers.store import Store, get_execution, get_job, list_jobs, record_member_state

C = "/api/cluster"
SAMPLE = Path(__file__).resolve().parent.parent / "docs" / "rundeck-jobs.yaml"
YAML = {"Content-Type": "application/yaml"}


def member(store: Store, uuid: str, name: str) -> None:
    record_member_state(store, uuid=uuid, name=name, state="active", last_seen_ms=1, changed_ms=1)


def test_create_a_job_owned_by_a_member_named_by_name(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    node = cluster_view.beat("node-1")
    body = {"name": "backup", "project": "ops", "shell": "pg_dump app > /b/app.sql",
            "schedule": "0 2 * * *", "time_zone": "Europe/Paris", "misfire": "fire_once",
            "as": "node-1"}  # fmt: skip
    job = api.ok("POST", f"{C}/jobs", 201, json=body)
    assert (job["owner_uuid"], job["owner_reason"], job["owner_epoch"]) == (node, "named", 1)
    assert (job["time_zone"], job["misfire"], job["executor"]["kind"]) == (
        "Europe/Paris",
        "fire_once",
        "shell",
    )
    assert api.ok("GET", f"{C}/jobs/{job['id']}")["time_zone"] == "Europe/Paris"
    fewest = api.ok("POST", f"{C}/jobs", 201, json={"name": "other", "command": "true"})
    assert fewest["owner_uuid"] == node
    assert fewest["owner_reason"] == "the active member owning the fewest jobs: node-1, 1 before"


def test_create_refusals_name_the_field_the_job_or_the_member(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    cluster_view.beat("node-1")
    first = api.ok("POST", f"{C}/jobs", 201, json={"name": "x", "command": "true"})
    taken = api.post(f"{C}/jobs", json={"name": "x", "command": "false"})
    assert taken.status_code == 409
    assert taken.json()["message"] == f"job default/x (id {first['id']}) already exists"
    bad = api.post(f"{C}/jobs", json={"name": "y", "command": "true", "time_zone": "Mars/Base"})
    assert (
        bad.status_code == 422 and "field 'time_zone': unknown time zone" in bad.json()["message"]
    )
    two = api.post(f"{C}/jobs", json={"name": "y", "command": "true", "shell": "true"})
    assert two.status_code == 422 and "exactly one executor" in two.json()["message"]
    who = api.post(f"{C}/jobs", json={"name": "y", "command": "true", "as": "node-9"})
    assert who.status_code == 422 and "no member is named 'node-9'" in who.json()["message"]
    assert [j.name for j in list_jobs(store)] == ["x"]


def test_patch_and_put_modify_through_the_named_member(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    a, b = cluster_view.beat("node-a"), cluster_view.beat("node-b")
    job_id = add_job(store, a, "j", schedule="* * * * *")
    patched = api.ok("PATCH", f"{C}/jobs/{job_id}",
                     json={"execution_enabled": False, "timeout": 5, "as": "node-b"})  # fmt: skip
    assert (patched["owner_uuid"], patched["owner_epoch"]) == (b, 2)
    assert (patched["execution_enabled"], patched["enabled"], patched["timeout_s"]) == (
        False,
        False,
        5.0,
    )
    kept = api.ok("PATCH", f"{C}/jobs/{job_id}", json={"timeout": None, "schedule_enabled": False})
    assert (kept["owner_uuid"], kept["owner_epoch"], kept["timeout_s"]) == (b, 3, None)
    assert (kept["schedule_enabled"], kept["execution_enabled"]) == (False, False)
    whole = {"name": "j2", "project": "p", "group": "g", "shell": "date"}
    replaced = api.ok("PUT", f"{C}/jobs/{job_id}", json=whole)
    assert (replaced["id"], replaced["name"], replaced["schedule"]) == (job_id, "j2", None)
    assert (replaced["schedule_enabled"], replaced["execution_enabled"]) == (True, True)
    assert replaced["owner_epoch"] == 4 and replaced["retry_count"] == 0
    bad = api.request("PATCH", f"{C}/jobs/{job_id}", json={"schedule": "0 0 12 ? * 8"})
    assert bad.status_code == 422 and "field 'schedule'" in bad.json()["message"]
    assert api.request("PATCH", f"{C}/jobs/none", json={"timeout": 1}).status_code == 404
    assert get_job(store, job_id).owner_epoch == 4


def test_delete_lets_running_executions_finish_or_aborts_them(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    a = cluster_view.beat("node-a")
    keep_id, abort_id = add_job(store, a, "keep"), add_job(store, a, "abort")
    kept = add_execution(store, keep_id, a)
    stopped = add_execution(store, abort_id, a)
    answer = api.ok("DELETE", f"{C}/jobs/{keep_id}")
    assert (answer["running"], answer["aborts"], answer["job"]["id"]) == ([kept], [], keep_id)
    assert get_execution(store, kept).status == "running"
    answer = api.ok("DELETE", f"{C}/jobs/{abort_id}", params={"abort": "true"})
    (abort,) = answer["aborts"]
    assert (abort["execution_id"], abort["outcome"]) == (stopped, "sent")  # to its live member
    assert api.request("DELETE", f"{C}/jobs/{abort_id}").status_code == 404
    assert [e["id"] for e in api.ok("GET", f"{C}/executions", params={"job": keep_id})] == [kept]
    assert api.get(f"{C}/executions", params={"job": "p/g/keep"}).status_code == 404


def test_executions_filter_by_a_jobs_path(api: Api, store: Store) -> None:
    job_id = add_job(store, "aaaaaaaa-0000-4000-8000-000000000001", "slow")
    run = add_execution(store, job_id, "aaaaaaaa-0000-4000-8000-000000000001")
    assert [e["id"] for e in api.ok("GET", f"{C}/executions", params={"job": "p/g/slow"})] == [run]


def test_run_of_a_job_whose_execution_is_disabled_is_409(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    a = cluster_view.beat("node-a")
    job_id = add_job(store, a, "j")
    api.ok("POST", f"/api/14/job/{job_id}/execution/disable")
    refused = api.post(f"{C}/jobs/{job_id}/run", json={"on": a})
    assert refused.status_code == 409 and "its executions are disabled" in refused.json()["message"]


# ---- the compatible calls ------------------------------------------------------------------


def test_compatible_toggles_and_delete(api: Api, store: Store) -> None:
    job_id = add_job(store, "aaaaaaaa-0000-4000-8000-000000000001", "j")
    assert api.ok("POST", f"/api/14/job/{job_id}/schedule/disable") == {"success": True}
    assert api.ok("POST", f"/api/41/job/{job_id}/execution/disable") == {"success": True}
    job = get_job(store, job_id)
    assert (job.schedule_enabled, job.execution_enabled, job.owner_epoch) == (False, False, 3)
    assert api.ok("POST", f"/api/14/job/{job_id}/schedule/enable") == {"success": True}
    assert get_job(store, job_id).schedule_enabled
    old = api.post(f"/api/13/job/{job_id}/schedule/enable")
    assert old.status_code == 400 and old.json()["apiversion"] == 13
    assert api.post("/api/14/job/none/execution/enable").status_code == 404
    gone = api.request("DELETE", f"/api/14/job/{job_id}")
    assert (gone.status_code, gone.content) == (204, b"")
    assert list_jobs(store) == []
    assert api.request("DELETE", f"/api/14/job/{job_id}").status_code == 404
    assert api.request("DELETE", f"/api/14/job/{job_id}", token=READ_TOKEN).status_code == 403


def test_compatible_import_of_rundeck_yaml(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    cluster_view.beat("node-1")
    url = "/api/14/project/web/jobs/import"
    text = SAMPLE.read_text()
    answer = api.ok("POST", url, content=text, headers=YAML)
    assert [j["index"] for j in answer["succeeded"]] == list(range(1, 11))
    assert {j["project"] for j in answer["succeeded"]} == {"web"}  # the path's project
    assert (answer["failed"], answer["skipped"]) == ([], [])
    (warning,) = answer["warnings"]
    assert "(web/deploy/deploy-web) field 'nodefilters' not imported" in warning
    again = api.ok("POST", url, content=text, headers=YAML)
    assert again["succeeded"] == [] and len(again["failed"]) == 1
    assert "already exists" in again["failed"][0]["error"]
    skipped = api.ok("POST", url, content=text, headers=YAML, params={"dupeOption": "skip"})
    assert (len(skipped["skipped"]), skipped["succeeded"]) == (10, [])
    jobs = yaml.safe_load(text)
    jobs[1]["schedule"]["crontab"] = "0 0/10 * ? * * *"
    update = {"dupeOption": "update"}
    updated = api.ok("POST", url, content=yaml.safe_dump(jobs), headers=YAML, params=update)
    assert len(updated["succeeded"]) == 10
    assert get_job(store, jobs[1]["uuid"]).schedule == "0 0/10 * ? * * *"
    assert len(list_jobs(store)) == 10


def test_compatible_import_refusals(api: Api, store: Store) -> None:
    url = "/api/14/project/web/jobs/import"
    bad = [
        {"name": "fine", "sequence": {"commands": [{"exec": "true"}]}},
        {"name": "two", "sequence": {"commands": [{"exec": "a"}, {"exec": "b"}]}},
    ]
    answer = api.ok("POST", url, content=yaml.safe_dump(bad), headers=YAML)
    assert answer["succeeded"] == []
    (failed,) = answer["failed"]
    assert (failed["index"], failed["name"]) == (2, "two")
    assert "2 steps: only a job of one step" in failed["error"]
    assert list_jobs(store) == []  # all or nothing
    xml = api.post(url, content="<joblist/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 400 and "XML" in xml.json()["message"]
    form = api.post(url, content="xmlBatch=x", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    broken = api.post(url, content="- [", headers=YAML)
    assert broken.status_code == 400 and "cannot read it" in broken.json()["message"]
    nobody = api.ok("POST", url, json=bad[:1])
    assert "no owner: no active member" in nobody["failed"][0]["error"]
    member(store, "aaaaaaaa-0000-4000-8000-000000000001", "node-1")
    as_json = api.ok("POST", url, json=bad[:1], params={"uuidOption": "remove"})
    assert [j["name"] for j in as_json["succeeded"]] == ["fine"]


def test_a_jobs_hooks_are_set_patched_and_shown_redacted(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    cluster_view.beat("node-1")
    secret = "https://hooks.example.com/t/s3cret"
    body = {"name": "h", "command": "false", "notify": {"onfailure": [secret]}}
    job = api.ok("POST", f"{C}/jobs", 201, json=body)
    assert job["notify"] == {"onfailure": ["https://hooks.example.com/…"]}  # no token shown
    assert get_job(store, job["id"]).notify == {"onfailure": (secret,)}
    bad = api.post(f"{C}/jobs", json={**body, "name": "i", "notify": {"ontimeout": "nope"}})
    assert bad.status_code == 422 and "field 'notify.ontimeout'" in bad.json()["message"]
    patch = {"notify": {"ontimeout": ["http://127.0.0.1:9/t"], "onfailure": None}}
    patched = api.ok("PATCH", f"{C}/jobs/{job['id']}", json=patch)
    assert patched["notify"] == {"ontimeout": ["http://127.0.0.1:9/…"]}
    assert api.ok("GET", f"{C}/jobs/{job['id']}")["notify"] == patched["notify"]
    cleared = api.ok("PATCH", f"{C}/jobs/{job['id']}", json={"notify": None})
    assert cleared["notify"] == {}
