"""``qwc jobs add|import`` with executors, timeout and concurrency, and ``qwc executions show``,
in-process (click's runner) against real databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures_cli import json_of
from tests.test_jobs_cli import A
from workers.cli.main import cli
from workers.store import (
    Store,
    create_job,
    finish_execution,
    get_job,
    insert_execution,
    list_jobs,
    start_execution,
)

URL = "https://hooks.example.test/run"


def test_add_a_shell_job_with_a_timeout_and_a_policy(run: Any, store: Store) -> None:
    job = json_of(
        run("jobs", "add", "cleanup", "--shell", "rm -f /tmp/x.* && echo done",
            "--timeout", "2.5", "--concurrency", "REPLACE", "--as", A, "--json")
    )  # fmt: skip
    assert job["executor"] == {"kind": "shell", "script": "rm -f /tmp/x.* && echo done"}
    assert (job["command"], job["timeout_s"], job["concurrency"]) == ([], 2.5, "replace")
    stored = get_job(store, job["id"])
    assert (stored.executor, stored.executor_spec["script"]) == (
        "shell",
        "rm -f /tmp/x.* && echo done",
    )
    assert (stored.timeout_s, stored.concurrency) == (2.5, "replace")


def test_add_an_http_job(run: Any, store: Store) -> None:
    job = json_of(
        run("jobs", "add", "ping", "--http", "post", URL, "--http-expect-status", "202",
            "--http-timeout", "4", "--as", A, "--json")
    )  # fmt: skip
    assert job["executor"] == {
        "kind": "http", "method": "POST", "url": URL, "expect_status": 202, "timeout_s": 4.0,
        "headers": {}, "body": None,
    }  # fmt: skip
    assert (job["timeout_s"], job["concurrency"]) == (None, "forbid")  # the defaults
    table = run("jobs", "list", COLUMNS="250")
    assert table.exit_code == 0 and f"POST {URL} (forbid)" in table.stdout


def test_add_a_python_job(run: Any, store: Store) -> None:
    job = json_of(
        run("jobs", "add", "report", "--python", "reports.daily:build",
            "--kwargs", '{"day": "mon", "n": 3}', "--as", A, "--json")
    )  # fmt: skip
    assert job["executor"] == {
        "kind": "python", "callable": "reports.daily:build", "kwargs": {"day": "mon", "n": 3}
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "invalid job: give exactly one executor: command, shell, http or python"),
        (["--command", "true", "--shell", "true"], "(found command, shell)"),
        (["--http", "FETCH", URL], "field 'http.method': 'FETCH' is not an HTTP method"),
        (["--http", "GET", "localhost:80"], "field 'http.url': 'localhost:80' is not an http"),
        (["--http", "GET", URL, "--http-expect-status", "700"], "field 'http.expect_status'"),
        (["--http", "GET", URL, "--http-timeout", "0"], "field 'http.timeout'"),
        (["--command", "true", "--http-timeout", "3"], "--http-timeout needs --http"),
        (["--python", "m:f", "--kwargs", "{nope"], "field 'python.kwargs': --kwargs is not JSON"),
        (["--python", "m:f", "--kwargs", "[1]"], "field 'python.kwargs': Input should be a valid"),
        (["--shell", "true", "--kwargs", "{}"], "--kwargs needs --python"),
        (["--python", "just_a_module"], "field 'python.callable': 'just_a_module' is not"),
        (["--command", "true", "--timeout", "0"], "Invalid value for '--timeout'"),
        (["--command", "true", "--concurrency", "often"], "Invalid value for '--concurrency'"),
    ],
)
def test_add_refuses_a_bad_executor_naming_the_field(
    run: Any, store: Store, args: list[str], message: str
) -> None:
    result = run("jobs", "add", "x", "--as", A, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert list_jobs(store) == []


IMPORT = f"""
- name: sh
  shell: "date; uptime"
  timeout: 30
  concurrency: allow
- name: hook
  http: {{method: GET, url: "{URL}", headers: {{Authorization: "Bearer s3cret"}}}}
- name: py
  python: {{callable: "pkg.mod:fn", kwargs: {{a: [1, 2]}}}}
- name: py-short
  python: pkg.mod:other
"""


def test_import_jobs_of_every_executor(run: Any, tmp_path: Path, store: Store) -> None:
    (tmp_path / "jobs.yaml").write_text(IMPORT)
    created = json_of(run("jobs", "import", "jobs.yaml", "--json", QWC_SERVER_UUID=A))
    by_name = {j["name"]: j for j in created}
    assert by_name["sh"]["executor"]["script"] == "date; uptime"
    assert (by_name["sh"]["timeout_s"], by_name["sh"]["concurrency"]) == (30.0, "allow")
    # the job's secret stays in the store, but listings show it masked
    assert by_name["hook"]["executor"]["headers"] == {"Authorization": "***"}
    hook = next(j for j in list_jobs(store) if j.name == "hook")
    assert hook.executor_spec["headers"] == {"Authorization": "Bearer s3cret"}
    assert by_name["py"]["executor"]["kwargs"] == {"a": [1, 2]}
    assert by_name["py-short"]["executor"] == {
        "kind": "python", "callable": "pkg.mod:other", "kwargs": {}
    }  # fmt: skip


def test_import_names_the_entry_and_executor_field(run: Any, tmp_path: Path, store: Store) -> None:
    (tmp_path / "jobs.yaml").write_text(
        "- {name: ok, shell: 'true'}\n"
        "- {name: two, shell: 'true', command: 'true'}\n"
        f"- {{name: bad-http, http: {{method: GET, url: '{URL}', timeout: -1}}}}\n"
        "- {name: bad-py, python: {callable: 'x:y', kwargs: 3}}\n"
    )
    result = run("jobs", "import", "jobs.yaml", QWC_SERVER_UUID=A)
    assert result.exit_code == 2
    for expected in (
        "jobs.yaml: entry [1] give exactly one executor: command, shell, http or python "
        "(found command, shell)",
        "jobs.yaml: entry [2] field 'http.timeout': Input should be greater than 0",
        "jobs.yaml: entry [3] field 'python.kwargs': Input should be a valid dictionary",
        "nothing imported",
    ):
        assert expected in result.stderr
    assert "entry [0]" not in result.stderr and list_jobs(store) == []


def _finished_execution(store: Store) -> tuple[str, str]:
    job = create_job(
        store, project="ops", group_name="", name="noisy", command=["true"], schedule=None,
        modified_by=A, now_ms=1,
    )  # fmt: skip
    execution_id = insert_execution(
        store, job_id=job.id, member_uuid=A, trigger="manual", fire_ms=60_000, now_ms=60_000
    )
    start_execution(store, execution_id, now_ms=60_100)
    output = "first line\n[... 10 bytes of output dropped ...]\nlast line\n"
    finish_execution(
        store, execution_id, status="timedout", now_ms=61_350, exit_code=-15, output=output,
        reason="timed out after 1 s",
    )  # fmt: skip
    return job.id, execution_id


def test_executions_show_prints_one_execution_with_its_output(run: Any, store: Store) -> None:
    job_id, execution_id = _finished_execution(store)
    shown = run("executions", "show", execution_id)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        f"execution {execution_id}",
        f"  job        {job_id} ops/noisy",
        f"  member     {A}",
        "  status     timedout (exit -15)",
        "  reason     timed out after 1 s",
        "  trigger    manual, attempt 1",
        "  fire time  1970-01-01T00:01:00.000+00:00",
        "  started    1970-01-01T00:01:00.100+00:00",
        "  ended      1970-01-01T00:01:01.350+00:00 (1.250 s)",
        "output:",
        "first line",
        "[... 10 bytes of output dropped ...]",
        "last line",
    ]
    as_json = json_of(run("executions", "show", execution_id, "--json"))
    assert as_json["output"].startswith("first line\n") and as_json["status"] == "timedout"
    assert (as_json["reason"], as_json["exit_code"]) == ("timed out after 1 s", -15)
    listed = json_of(run("executions", "--json"))
    assert [e["id"] for e in listed] == [execution_id] and "output" not in listed[0]
    assert listed[0]["reason"] == "timed out after 1 s"


def test_executions_show_of_an_unknown_id_exits_2(run: Any) -> None:
    result = run("executions", "show", "nope")
    assert result.exit_code == 2 and "no execution nope" in result.stderr


def test_executions_show_has_help() -> None:
    result = CliRunner().invoke(cli, ["executions", "show", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "head and its tail" in " ".join(result.output.split())
