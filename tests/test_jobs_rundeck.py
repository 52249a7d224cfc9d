"""Rundeck's job YAML (v12) read as job specs: pure tables of what each field becomes, what
refuses a job and what is dropped with a warning; then ``qwc jobs import`` of the shipped
sample (docs/rundeck-jobs.yaml) and a re-import with ``--update``, on real databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.fixtures_cli import json_of
from workers.jobs import JobSpec, SpecError, parse_import
from workers.jobs.rundeck import convert_job, parse_duration_s, structured_schedule
from workers.store import Store, get_job, list_jobs

SAMPLE = Path(__file__).resolve().parent.parent / "docs" / "rundeck-jobs.yaml"
A = "aaaaaaaa-0000-4000-8000-000000000001"


def rundeck(**fields: Any) -> dict[str, Any]:
    """A minimal Rundeck job with ``fields`` on top."""
    return {"name": "j", "sequence": {"commands": [{"exec": "true"}]}, **fields}


def spec(**fields: Any) -> JobSpec:
    (one,) = parse_import([rundeck(**fields)], "f.yaml", project="p").specs
    return one


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(120, 120.0), ("120", 120.0), ("1h30m", 5400.0), ("6h 30m", 23400.0), ("1h1m1s", 3661.0),
     ("2d", 172800.0), ("45s", 45.0), ("1.5", 1.5)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["1x", "h", "1h foo", "${option.timeout}", True])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(text)


@pytest.mark.parametrize(
    ("schedule", "quartz"),
    [
        ({}, "0 0 0 ? * * *"),
        ({"time": {"hour": "05", "minute": "01", "seconds": "0"}, "month": "APR,MAR,MAY",
          "year": "*", "weekday": {"day": "FRI,MON,TUE"}}, "0 01 05 ? APR,MAR,MAY FRI,MON,TUE *"),
        ({"time": {"hour": "6"}, "dayofmonth": {"day": "1,15"}}, "0 0 6 1,15 * ? *"),
        ({"time": {"minute": "*/5", "hour": "*"}, "weekday": {"day": "*"}}, "0 */5 * ? * * *"),
    ],
)  # fmt: skip
def test_structured_schedules_become_rundecks_quartz_text(
    schedule: dict[str, Any], quartz: str
) -> None:
    assert structured_schedule(schedule) == quartz


def test_the_fields_rundeck_jobs_carry() -> None:
    s = spec(
        group="ops/nightly", description="d", uuid="0b2e3c6a-7d41-4a6e-9a57-1c1f0f7d2a01",
        schedule={"crontab": "0 30 2 ? * MON-FRI *"}, timeZone="Europe/Paris",
        multipleExecutions=True, timeout="1h", retry={"retry": "2", "delay": "30s"},
        scheduleEnabled=False, executionEnabled="false",
    )  # fmt: skip
    assert (s.project, s.group, s.name, s.description) == ("p", "ops/nightly", "j", "d")
    assert (s.id, s.schedule, s.time_zone) == (
        "0b2e3c6a-7d41-4a6e-9a57-1c1f0f7d2a01",
        "0 30 2 ? * MON-FRI *",
        "Europe/Paris",
    )
    assert (s.concurrency, s.timeout, s.retry, s.retry_delay) == ("allow", 3600.0, 2, 30.0)
    assert (s.enabled, s.execution_enabled) == (False, False)
    plain = spec()
    assert (plain.concurrency, plain.enabled, plain.execution_enabled) == ("forbid", True, True)


@pytest.mark.parametrize(
    ("step", "executor"),
    [
        ({"exec": "pg_dump app | gzip > /b/app.gz"},
         {"kind": "shell", "script": "pg_dump app | gzip > /b/app.gz"}),
        ({"script": "echo hi\necho there"}, {"kind": "shell", "script": "echo hi\necho there"}),
        ({"script": "echo $1", "args": "'a b' c"},
         {"kind": "command", "argv": ("/bin/sh", "-c", "echo $1", "script", "a b", "c")}),
        ({"script": "#!/bin/bash\necho ${BASH_VERSION}"},
         {"kind": "command", "argv": ("/bin/bash", "-c", "#!/bin/bash\necho ${BASH_VERSION}",
                                      "script")}),
        ({"script": "#!/usr/bin/env zsh\necho"},
         {"kind": "command", "argv": ("/usr/bin/env", "zsh", "-c", "#!/usr/bin/env zsh\necho",
                                      "script")}),
        ({"scriptfile": "/opt/run.sh", "args": "--days 7"},
         {"kind": "command", "argv": ("/opt/run.sh", "--days", "7")}),
    ],
)  # fmt: skip
def test_each_step_kind_becomes_an_executor(step: dict[str, Any], executor: dict[str, Any]) -> None:
    s = spec(sequence={"commands": [step], "keepgoing": False, "strategy": "node-first"})
    assert s.executor.model_dump() == executor


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"sequence": {"commands": []}}, "field 'sequence.commands': no step"),
        ({"sequence": {"commands": [{"exec": "a"}, {"exec": "b"}]}},
         "field 'sequence.commands': 2 steps: only a job of one step can be imported"),
        ({"sequence": {"commands": [{"jobref": {"name": "other"}}]}},
         "field 'sequence.commands[0].jobref': a step of kind 'jobref' is not supported"),
        ({"sequence": {"commands": [{"type": "copyfile", "nodeStep": True}]}},
         "a step of kind 'type' is not supported"),
        ({"sequence": {"commands": [{"script": "#!/usr/bin/python3\nprint(1)"}]}},
         "field 'sequence.commands[0].script': a script run by '/usr/bin/python3'"),
        ({"sequence": {"commands": [{"script": "x", "scriptInterpreter": "sudo"}]}},
         "field 'sequence.commands[0].scriptInterpreter'"),
        ({"timeout": "${option.timeout}"}, "field 'timeout': '${option.timeout}' refers to a job"),
        ({"retry": {"retry": "2", "delay": "soon"}}, "field 'retry.delay': 'soon' is not a dur"),
        ({"retry": "${option.retry}"}, "field 'retry': '${option.retry}' refers to a job option"),
        ({"schedule": {"weekday": {"day": "MON"}, "dayofmonth": {"day": "1"}}},
         "field 'schedule': weekday and dayofmonth are mutually exclusive"),
        ({"schedule": {"crontab": "0 0 12 ? * 9 *"}}, "field 'schedule': invalid cron schedule"),
        ({"timeZone": "Europe/Pariss"}, "field 'time_zone': unknown time zone 'Europe/Pariss'"),
        ({"scheduleEnabled": "maybe"}, "field 'scheduleEnabled': expected true or false"),
        ({"uuid": "a", "id": "b"}, "field 'uuid': uuid 'a' and id 'b' differ"),
    ],
)  # fmt: skip
def test_what_cannot_run_as_written_refuses_the_job(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_import([rundeck(name="ok"), rundeck(**fields)], "f.yaml", project="p")
    text = "\n".join(caught.value.problems)
    assert "f.yaml: entry [1] (p/j) " in text and problem in text, text
    assert "entry [0]" not in text


def test_what_is_not_represented_is_dropped_with_a_warning_naming_job_and_field() -> None:
    job = rundeck(
        group="web", loglevel="DEBUG", defaultTab="nodes", nodeFilterEditable=False,
        plugins={"ExecutionLifecycle": {}}, options=[], schedules=[],
        nodefilters={"filter": "tags: web"}, options_x=1,
        notification={"onfailure": {"recipients": "ops@example.com"}},
        loglimit="100MB", orchestrator={"type": "subset"},
        sequence={"commands": [{"exec": "x", "errorhandler": {"exec": "y"}}]},
    )  # fmt: skip
    job["options"] = [{"name": "env"}]
    imported = parse_import([job], "f.yaml", project="p")
    assert imported.rundeck
    fields = sorted(line.split("field ")[1].split(" ")[0] for line in imported.warnings)
    assert fields == [
        "'loglimit'",
        "'nodefilters'",
        "'notification.onfailure.recipients'",
        "'options'",
        "'options_x'",
        "'orchestrator'",
        "'sequence.commands[0].errorhandler'",
    ]
    assert all(line.startswith("f.yaml: entry [0] (p/web/j) field ") for line in imported.warnings)
    assert "the command runs on the member that fires the job" in "\n".join(imported.warnings)


def test_the_project_comes_from_the_job_else_from_the_caller() -> None:
    (own,) = parse_import([rundeck(project="mine")], "f", project="p").specs
    assert own.project == "mine"
    (forced,) = parse_import([rundeck(project="mine")], "f", project="p", force_project=True).specs
    assert forced.project == "p"
    (default,) = parse_import([rundeck()], "f").specs
    assert default.project == "default"


def test_this_projects_files_are_not_read_as_rundecks() -> None:
    imported = parse_import([{"name": "x", "command": "true"}], "f")
    assert not imported.rundeck and imported.specs[0].executor.kind == "command"
    with pytest.raises(SpecError, match="field 'shell'"):  # no 'sequence': our format
        parse_import([{"name": "x", "shell": ""}], "f")
    assert convert_job(rundeck()).fields["shell"] == "true"


# ---- qwc jobs import of the sample, then --update ---------------------------------------


def test_the_sample_imports_with_the_node_filter_reported(run: Any, store: Store) -> None:
    result = run("jobs", "import", str(SAMPLE), QWC_SERVER_UUID=A)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(f"imported 10 job(s) from {SAMPLE}\n")
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("warning: ") and "(ops/deploy/deploy-web) field 'nodefilters'" in (
        warning
    )
    jobs = {j.name: j for j in list_jobs(store)}
    assert len(jobs) == 10 and {j.project for j in jobs.values()} == {"ops"}
    backup = jobs["db-backup"]
    assert (backup.id, backup.group_name, backup.schedule, backup.time_zone) == (
        "0b2e3c6a-7d41-4a6e-9a57-1c1f0f7d2a01",
        "ops/backup",
        "0 30 02 ? * * *",
        "Europe/Paris",
    )
    assert (backup.timeout_s, backup.retry_count, backup.retry_delay_s) == (5400.0, 2, 300.0)
    assert jobs["cache-warm"].concurrency == "allow" and jobs["db-backup"].concurrency == "forbid"
    assert not jobs["invoice-sync"].schedule_enabled and jobs["invoice-sync"].execution_enabled
    assert jobs["ny-open"].time_zone == "America/New_York"
    assert jobs["deploy-web"].schedule is None
    again = run("jobs", "import", str(SAMPLE), QWC_SERVER_UUID=A)
    assert again.exit_code == 2
    assert (
        "entry [0] field 'id': job ops/ops/backup/db-backup (id "
        "0b2e3c6a-7d41-4a6e-9a57-1c1f0f7d2a01) already exists"
    ) in again.stderr
    assert "pass --update" in again.stderr and "nothing imported" in again.stderr


def test_update_changes_only_the_job_that_changed(run: Any, store: Store, tmp_path: Path) -> None:
    assert run("jobs", "import", str(SAMPLE), QWC_SERVER_UUID=A).exit_code == 0
    before = {j.id: j for j in list_jobs(store)}
    jobs = yaml.safe_load(SAMPLE.read_text())
    jobs[0]["schedule"]["time"]["hour"] = "03"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(jobs))
    updated = json_of(run("jobs", "import", str(changed), "--update", "--json"))
    outcomes = {j["name"]: j["outcome"] for j in updated}
    assert outcomes.pop("db-backup") == "updated"
    assert set(outcomes.values()) == {"unchanged"}
    after = {j.id: j for j in list_jobs(store)}
    backup_id = "0b2e3c6a-7d41-4a6e-9a57-1c1f0f7d2a01"
    assert after[backup_id].schedule == "0 30 03 ? * * *"
    assert after[backup_id].owner_epoch == before[backup_id].owner_epoch + 1
    assert after[backup_id].owner_uuid == A  # no member named: the owner is kept
    for job_id, job in after.items():
        if job_id != backup_id:
            assert job == before[job_id]
    text = run("jobs", "import", str(changed), "--update")
    assert text.stdout.endswith(": 0 created, 0 updated, 10 unchanged\n")
    assert get_job(store, backup_id).owner_epoch == after[backup_id].owner_epoch
