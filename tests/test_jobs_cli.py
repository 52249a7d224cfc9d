"""``qwc jobs add|list|import`` and ``qwc executions`` against real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures_cli import json_of
from workers.cli.main import cli
from workers.store import Store, create_job, get_job, insert_execution, list_jobs, start_execution

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
CLEARED = ("QWC_CONFIG", "QWC_DATABASE_URL", "QWC_DATASOURCE_URL", "QWC_HOME", "QWC_REDIS_URL")


def test_add_creates_a_job_owned_by_as(run: Any, store: Store) -> None:
    job = json_of(
        run(
            "jobs", "add", "backup", "--command", "tar czf '/tmp/a b.tgz' /etc",
            "--schedule", " */10  * * * * *", "--project", "ops", "--group", "nightly",
            "--as", A.upper(), "--retry", "2", "--retry-delay", "1.5", "--json",
        )
    )  # fmt: skip
    assert job["command"] == ["tar", "czf", "/tmp/a b.tgz", "/etc"]
    assert (job["name"], job["project"], job["group"]) == ("backup", "ops", "nightly")
    assert (job["owner_uuid"], job["owner_epoch"], job["enabled"]) == (A, 1, True)
    assert (job["schedule"], job["retry_count"], job["retry_delay_s"]) == ("*/10 * * * * *", 2, 1.5)
    stored = get_job(store, job["id"])
    assert (stored.modified_by, stored.command) == (A, ("tar", "czf", "/tmp/a b.tgz", "/etc"))
    listed = json_of(run("jobs", "list", "--json"))
    assert [j["id"] for j in listed] == [job["id"]] and listed[0] == job


def test_add_defaults_the_owner_to_the_server_uuid_and_runs_on_demand(run: Any) -> None:
    result = run("jobs", "add", "ping", "--command", "true", "--disabled", QWC_SERVER_UUID=B)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("job ") and f"default/ping, owner {B}" in result.stdout
    (job,) = json_of(run("jobs", "list", "--json"))
    assert (job["owner_uuid"], job["schedule"], job["enabled"]) == (B, None, False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "61 * * * *", "--as", A], "minute field '61' is not acceptable"),
        (["--schedule", "* * * * * * *", "--as", A], "Quartz needs '?' in day-of-month"),
        (["--schedule", "0 0 30 2 *", "--as", A], "never fires"),
        (["--as", "not-a-uuid"], "no member is named 'not-a-uuid'"),
        ([], "no owner: no active member to give the job to; pass --as MEMBER"),
        (["--as", A, "--retry", "-1"], "x>=0"),
    ],
)
def test_add_rejects_bad_options_with_exit_2(
    run: Any, store: Store, args: list[str], message: str
) -> None:
    result = run("jobs", "add", "x", "--command", "true", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list_jobs(store) == []


def test_add_rejects_an_empty_command(run: Any) -> None:
    result = run("jobs", "add", "x", "--command", "  ", "--as", A)
    assert result.exit_code == 2 and "field 'command': the command is empty" in result.output
    unbalanced = run("jobs", "add", "x", "--command", "echo 'oops", "--as", A)
    assert unbalanced.exit_code == 2 and "No closing quotation" in unbalanced.output


def test_add_of_an_existing_name_exits_1(run: Any) -> None:
    assert run("jobs", "add", "x", "--command", "true", "--as", A).exit_code == 0
    again = run("jobs", "add", "x", "--command", "false", "--as", B)
    assert again.exit_code == 1 and "job default/x" in again.output
    assert "already exists" in again.output


def test_list_filters_by_owner_and_project(run: Any, store: Store) -> None:
    for name, owner, project in (("a", A, "ops"), ("b", B, "ops"), ("c", A, "web")):
        create_job(
            store, project=project, group_name="", name=name, command=["true"],
            schedule=None, modified_by=owner, now_ms=1,
        )  # fmt: skip
    by_owner = json_of(run("jobs", "list", "--owner", A.upper(), "--json"))
    assert [j["name"] for j in by_owner] == ["a", "c"]
    both = json_of(run("jobs", "list", "--owner", A, "--project", "ops", "--json"))
    assert [j["name"] for j in both] == ["a"]
    table = run("jobs", "list", "--project", "ops")
    assert table.exit_code == 0 and "jobs (2)" in table.stdout and "(on demand)" in table.stdout


YAML_JOBS = f"""
- name: backup
  command: tar czf /tmp/b.tgz /etc
  schedule: "0 2 * * *"
  project: ops
  group: nightly
  as: {A}
  retry: 3
  retry_delay: 2.5
- name: report
  command: [python, -c, "print('hi there')"]
  schedule: "*/5 * * * * *"
  owner: {B}
- name: adhoc
  command: "true"
"""


def test_import_yaml_creates_every_job(run: Any, tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(YAML_JOBS)
    result = run("jobs", "import", "jobs.yaml", QWC_SERVER_UUID=A)
    assert (result.exit_code, result.stdout) == (0, "imported 3 job(s) from jobs.yaml\n")
    jobs = {j["name"]: j for j in json_of(run("jobs", "list", "--json"))}
    assert jobs["backup"]["owner_uuid"] == A and jobs["backup"]["group"] == "nightly"
    assert (jobs["backup"]["retry_count"], jobs["backup"]["retry_delay_s"]) == (3, 2.5)
    assert jobs["report"]["command"] == ["python", "-c", "print('hi there')"]
    assert (jobs["report"]["owner_uuid"], jobs["adhoc"]["owner_uuid"]) == (B, A)
    assert (jobs["adhoc"]["schedule"], jobs["adhoc"]["project"]) == (None, "default")


def test_import_json_prints_the_created_jobs(run: Any, tmp_path: Path) -> None:
    entries = [{"name": "j1", "command": ["true"], "as": A}, {"name": "j2", "command": "false"}]
    (tmp_path / "jobs.JSON").write_text(json.dumps(entries))
    created = json_of(run("jobs", "import", "jobs.JSON", "--json", QWC_SERVER_UUID=B))
    assert [(j["name"], j["owner_uuid"]) for j in created] == [("j1", A), ("j2", B)]


def test_import_names_every_bad_entry_and_imports_nothing(
    run: Any, tmp_path: Path, store: Store
) -> None:
    entries = [
        {"name": "fine", "command": "true", "as": A},
        {"name": "bad", "command": "true", "schedule": "* * *", "retry": -2, "colour": "red"},
        "not an object",
    ]
    (tmp_path / "jobs.yml").write_text(json.dumps(entries))  # JSON is YAML too
    result = run("jobs", "import", "jobs.yml", QWC_SERVER_UUID=A)
    assert result.exit_code == 2
    for expected in (
        "jobs.yml: entry [1] field 'schedule': cron schedule '* * *' has 3 field(s)",
        "jobs.yml: entry [1] field 'retry': Input should be greater than or equal to 0",
        "jobs.yml: entry [1] field 'colour': Extra inputs are not permitted",
        "jobs.yml: entry [2] is not an object: 'not an object'",
        "nothing imported",
    ):
        assert expected in result.stderr
    assert "entry [0]" not in result.stderr
    assert list_jobs(store) == []


def test_import_is_one_transaction(run: Any, tmp_path: Path, store: Store) -> None:
    """The second entry collides with an existing job: the first is not kept either."""
    create_job(
        store, project="default", group_name="", name="taken", command=["true"],
        schedule=None, modified_by=B, now_ms=1,
    )  # fmt: skip
    (tmp_path / "jobs.yaml").write_text(
        "- {name: new, command: 'true'}\n- {name: taken, command: x}\n"
    )
    result = run("jobs", "import", "jobs.yaml", QWC_SERVER_UUID=A)
    assert result.exit_code == 2
    taken = list_jobs(store)[0].id  # the existing job's id is named, not the new one's
    assert f"jobs.yaml: entry [1] field 'name': job default/taken (id {taken})" in result.stderr
    assert [j.name for j in list_jobs(store)] == ["taken"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("jobs.txt", "[]", "unknown file type '.txt'"),
        ("jobs.json", "[", "cannot read it"),
        ("jobs.yaml", "name: x\n", "expected a list of jobs, found dict"),
        ("jobs.yaml", "- {name: x, command: y}\n", "no owner"),
    ],
)
def test_import_refuses_bad_files(
    run: Any, tmp_path: Path, name: str, content: str, message: str
) -> None:
    (tmp_path / name).write_text(content)
    result = run("jobs", "import", name)
    assert result.exit_code == 2 and message in result.stderr


def test_import_of_an_empty_file_imports_nothing(run: Any, tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text("")
    result = run("jobs", "import", "jobs.yaml")
    assert (result.exit_code, result.stdout) == (0, "imported 0 job(s) from jobs.yaml\n")


def test_executions_lists_and_filters(run: Any, store: Store) -> None:
    job = create_job(
        store, project="ops", group_name="", name="j", command=["true"],
        schedule="* * * * *", modified_by=A, now_ms=1,
    )  # fmt: skip
    first = insert_execution(
        store, job_id=job.id, member_uuid=A, trigger="schedule", fire_ms=60_000, now_ms=60_010
    )
    start_execution(store, first, now_ms=60_020)
    second = insert_execution(
        store, job_id=job.id, member_uuid=B, trigger="manual", fire_ms=120_000, now_ms=120_001
    )
    rows = json_of(run("executions", "--json"))
    assert [r["id"] for r in rows] == [second, first]  # newest first
    started = rows[1]
    assert (started["job_id"], started["member_uuid"], started["status"]) == (job.id, A, "running")
    assert (started["trigger"], started["attempt"], started["fire_ms"]) == ("schedule", 1, 60_000)
    assert started["fire_time"] == "1970-01-01T00:01:00.000+00:00"
    assert (started["started"], started["ended"], started["exit_code"]) == (
        "1970-01-01T00:01:00.020+00:00",
        None,
        None,
    )
    assert [r["id"] for r in json_of(run("executions", "--member", B, "--json"))] == [second]
    running = json_of(run("executions", "--status", "running", "--status", "failed", "--json"))
    assert [r["id"] for r in running] == [first]
    assert [
        r["id"] for r in json_of(run("executions", "--job", job.id, "--limit", "1", "--json"))
    ] == [second]
    table = run("executions", "--job", job.id)
    assert table.exit_code == 0 and "executions (2, newest first)" in table.stdout
    assert run("executions", "--status", "bogus").exit_code == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["jobs"], "last member that modified"),
        (["jobs", "add"], "6 with seconds first"),
        (["jobs", "list"], "owner_epoch"),
        (["jobs", "import"], "entry index and field"),
        (["executions"], "fire_time"),
    ],
)
def test_every_command_has_help(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0 and expected in " ".join(result.output.split())


@pytest.mark.processes
def test_real_processes_on_the_embedded_defaults(tmp_path: Path) -> None:
    """``qwc jobs add`` then ``qwc jobs list --json`` as real processes, no URLs set."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith("QWC_")}
    env["QWC_HOME"] = str(tmp_path / "home")
    qwc = [str(Path(sys.executable).parent / "qwc")]  # the console script pip installed
    add = [*qwc, "jobs", "add", "hello", "--command", "echo hello", "--schedule", "* * * * *"]
    added = subprocess.run(
        [*add, "--as", A], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert added.returncode == 0, added.stderr
    listed = subprocess.run(
        [*qwc, "jobs", "list", "--json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    (job,) = json.loads(listed.stdout)
    assert (job["name"], job["command"], job["owner_uuid"]) == ("hello", ["echo", "hello"], A)
    assert (tmp_path / "home" / "qwc.db").is_file()
