"""Waiting is visible: a member's executions running and waiting (due, not started), counted
from the store, in ``qwc members --json``, the manager's member rows and ``/metrics``."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from tests.manager_fixtures import Api, ClusterView, add_execution, add_job
from tests.test_manager_metrics import scrape, value
from workers.cli.main import cli
from workers.store import Store, insert_execution


def test_running_and_waiting_per_member_in_the_api_the_cli_and_the_metrics(
    api: Api, cluster_view: ClusterView, store: Store
) -> None:
    busy, idle = cluster_view.beat("busy"), cluster_view.beat("idle")
    job = add_job(store, busy, "j")
    add_execution(store, job, busy, status="running")
    for _ in range(3):
        add_execution(store, job, busy, status="scheduled")  # due now: waiting
    later_ms = int(time.time() * 1000) + 3_600_000
    insert_execution(  # a retry due in an hour: not waiting yet
        store, job_id=job, member_uuid=busy, trigger="retry", fire_ms=later_ms, now_ms=later_ms
    )
    expected = {busy: (1, 3), idle: (0, 0)}

    rows = api.get("/api/cluster/members", token="read-token-for-tests").json()
    got = {r["uuid"]: (r["executions_running"], r["executions_waiting"]) for r in rows}
    assert got == expected

    m = scrape(api, token="read-token-for-tests")
    for uuid, (running, waiting) in expected.items():
        assert value(m, "qwc_executions_running", member=uuid) == running
        assert value(m, "qwc_executions_waiting", member=uuid) == waiting

    env = {
        "QWC_REDIS_URL": api.settings.redis_url or "",
        "QWC_DATABASE_URL": api.settings.database_url or "",
        "QWC_HOME": str(api.settings.home_dir),
    }
    listed = CliRunner().invoke(cli, ["members", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    cli_rows = json.loads(listed.output)
    assert {
        r["uuid"]: (r["executions_running"], r["executions_waiting"]) for r in cli_rows
    } == expected
    table = CliRunner().invoke(cli, ["members"], env={**env, "COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    header, busy_line = (
        next(line.split() for line in table.output.splitlines() if word in line)
        for word in ("wait", busy)
    )
    assert header[-2:] == ["run", "wait"] and busy_line[-2:] == ["1", "3"], table.output
