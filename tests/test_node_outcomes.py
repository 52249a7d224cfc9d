"""What the member records for each executor kind, through its real path (dispatcher ->
consumer -> pool -> recorder -> store; ``parts``): a shell script, an HTTP call against a
local server and a Python callable each record their outcome and output, a job whose
stored executor is corrupt is ``failed`` with the reason, and ``qwc executions show``
prints what was recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_cli import json_of
from tests.node_parts import ME, T0, Parts, manual
from workers.jobs import executor_columns, parse_spec
from workers.store import Store, create_job, get_execution

ROOT = Path(__file__).resolve().parent.parent


def job_of(store: Store, name: str, **executor: Any) -> str:
    """A job of ``ME`` run on demand, with the executor given as spec fields."""
    kind, command, spec = executor_columns(parse_spec({"name": name, **executor}).executor)
    return create_job(
        store, project="ops", group_name="", name=name, command=command, schedule=None,
        modified_by=ME, now_ms=T0, executor=kind, executor_spec=spec,
    ).id  # fmt: skip


def test_each_executor_kind_records_its_outcome_and_output(
    store: Store, parts: Parts, http_server: str, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the python job's package is imported from the member's directory
    shell = manual(store, job_of(store, "sh", shell='echo "job $QWC_JOB_ID" >&2; exit 5'))
    http = manual(store, job_of(store, "web", http={"method": "GET", "url": f"{http_server}/ok"}))
    python = manual(
        store, job_of(store, "py", python={"callable": "tests.pycall_target:doubled",
                                           "kwargs": {"x": 21}}),
    )  # fmt: skip
    parts.dispatcher.step(T0)
    assert parts.consumer.step() == 2  # two slots: the third waits on the queue
    assert parts.pool.wait_idle(30)
    assert parts.run_queued() == 1
    sh, web, py = (get_execution(store, e) for e in (shell, http, python))
    assert (sh.status, sh.exit_code, sh.output, sh.reason) == (
        "failed", 5, f"job {sh.job_id}\n", None,
    )  # fmt: skip
    assert (web.status, web.exit_code, web.reason) == ("succeeded", None, None)
    head, body = (web.output or "").split("\n", 1)
    assert head == "HTTP 200 OK" and json.loads(body)["X-Qwc-Execution-Id"] == http
    assert (py.status, py.exit_code, py.output) == ("succeeded", 0, "42\n")
    shown = run("executions", "show", shell)
    assert shown.exit_code == 0, shown.output
    assert "status     failed (exit 5)" in shown.stdout
    assert shown.stdout.endswith(f"output:\njob {sh.job_id}\n")
    assert json_of(run("executions", "show", http, "--json"))["output"] == web.output


def test_a_job_whose_stored_executor_is_corrupt_is_failed_with_the_reason(
    store: Store, parts: Parts
) -> None:
    corrupt = manual(store, job_of(store, "hook", http={"method": "GET", "url": "http://x/"}))
    with store.begin() as conn:  # a row written by hand, or by a release that knew more
        conn.exec_driver_sql("UPDATE scheduled_jobs SET executor_spec = '{}' WHERE name = 'hook'")
    parts.dispatcher.step(T0)
    assert parts.run_queued() == 1
    e = get_execution(store, corrupt)
    assert (e.status, e.exit_code) == ("failed", None)
    assert e.reason is not None and e.reason.startswith(f"cannot run job {e.job_id}:")
