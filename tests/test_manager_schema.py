"""schemathesis against the manager's OpenAPI document, in-process on real Redis and SQL:
whatever it sends to any operation (with the write token), no answer is a 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.manager_fixtures import (
    WRITE_TOKEN,
    ClusterView,
    add_execution,
    add_job,
    manager_settings,
)
from workers.manager.app import create_app
from workers.store import Store


@pytest.fixture
def manager_schema(
    r: redis.Redis, store: Store, redis_url: str, db_url: str, tmp_path: Path
) -> Any:
    """The schema of an app on a small cluster (two active members, a dead one with jobs
    and executions, a job of the live one) and path values that exist in it."""
    app_settings = manager_settings(redis_url, db_url, tmp_path / "home")
    cluster = ClusterView(r, store, app_settings)
    live = cluster.beat("live", tags=("a",))
    cluster.beat("other", passive=True)
    dead = cluster.beat("dead")
    for i in range(3):
        job = add_job(store, dead, f"dead-{i}")
        execution = add_execution(store, job, dead, "running")
    add_job(store, live, "live-job")
    cluster.kill(dead)
    app = create_app(app_settings, client=r, store=store)
    known = {
        "v": 17,
        "uuid": live,
        "job_id": job,
        "execution_id": execution,
        "action": "disable",
        "project": "p",
    }
    return schemathesis.openapi.from_asgi("/openapi.json", app), known


CHECKS = [not_a_server_error]
EXAMPLES = 10  # per operation and pass: ~450 calls in all, a few seconds


def fuzz(strategy: Any) -> None:
    """Call ``EXAMPLES`` cases of ``strategy`` with the write token; fail on a 5xx."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases every run
        database=None,  # no .hypothesis directory in the work tree
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {WRITE_TOKEN}"}, checks=CHECKS)

    run()


def test_no_operation_answers_a_server_error(manager_schema: Any) -> None:
    schema, known = manager_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 28
    # Reads first, while the seeded cluster is intact; then what changes it.
    operations.sort(key=lambda op: (op.method.upper() != "GET", op.path))
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        if names:  # on things that exist, past the 404s
            fuzz(operation.as_strategy(path_parameters={name: known[name] for name in names}))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation.as_strategy(generation_mode=mode))
