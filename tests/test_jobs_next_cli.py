"""``qwc jobs next``: fire times of a stored job or of a cron text, in its zone and in UTC,
in-process against real databases (SQLite, and PostgreSQL when QWC_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import Result

from workers.store import JobRow, Store, create_job

A = "aaaaaaaa-0000-4000-8000-000000000001"


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _job(store: Store, schedule: str | None, group: str = "nightly") -> JobRow:
    return create_job(
        store, project="ops", group_name=group, name="backup", command=["true"],
        schedule=schedule, modified_by=A, now_ms=1,
    )  # fmt: skip


def test_a_job_in_the_cluster_default_zone_by_path_and_by_id(run: Any, store: Store) -> None:
    job = _job(store, "0 30 2 ? * SUN")  # Quartz: Sundays 02:30, across the October change
    args = ("--count", "3", "--after", "2025-10-20T00:00:00Z", "--json")
    shown = _json(
        run("jobs", "next", "ops/nightly/backup", *args, QWC_SCHEDULER_TIMEZONE="Europe/Paris")
    )
    assert (shown["job_id"], shown["job"], shown["enabled"]) == (job.id, "ops/nightly/backup", True)
    assert (shown["schedule"], shown["syntax"]) == ("0 30 2 ? * SUN", "quartz")
    zone = (shown["time_zone"], shown["time_zone_from"])
    assert zone == ("Europe/Paris", "qwcontrol.scheduler.timeZone")
    assert [(f["local"], f["utc"]) for f in shown["fires"]] == [
        ("2025-10-26T02:30:00+02:00", "2025-10-26T00:30:00.000+00:00"),  # summer time, once
        ("2025-11-02T02:30:00+01:00", "2025-11-02T01:30:00.000+00:00"),
        ("2025-11-09T02:30:00+01:00", "2025-11-09T01:30:00.000+00:00"),
    ]
    assert shown["fires"][0]["fire_ms"] == 1_761_438_600_000
    by_id = _json(run("jobs", "next", job.id, *args, QWC_SCHEDULER_TIMEZONE="Europe/Paris"))
    assert by_id == shown
    in_utc = _json(run("jobs", "next", job.id, *args))  # the default default: UTC
    assert in_utc["time_zone"] == "UTC"
    assert in_utc["fires"][0]["utc"] == "2025-10-26T02:30:00.000+00:00"


def test_the_text_shows_the_syntax_the_zone_and_both_times(run: Any, store: Store) -> None:
    job = _job(store, "30 2 * * *", group="")
    result = run("jobs", "next", "ops/backup", "--count", "2", "--after", "2025-03-29T12:00",
                 QWC_SCHEDULER_TIMEZONE="Europe/Paris")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"job ops/backup (id {job.id}): '30 2 * * *' (Unix cron, 5 fields) in Europe/Paris, "
        "from qwcontrol.scheduler.timeZone; after 2025-03-29T11:00:00.000+00:00:",
        "  2025-03-30T03:00:00+02:00 CEST   = 2025-03-30T01:00:00.000+00:00",  # 02:30 skipped
        "  2025-03-31T02:30:00+02:00 CEST   = 2025-03-31T00:30:00.000+00:00",
    ]


def test_a_schedule_checked_before_a_job_exists(run: Any) -> None:
    shown = _json(
        run("jobs", "next", "--schedule", "*/30 * * * *", "--time-zone", "America/New_York",
            "--after", "2025-11-02T00:45", "--count", "5", "--json")
    )  # fmt: skip
    assert (shown["job_id"], shown["time_zone_from"], shown["syntax"]) == (None, "option", "unix")
    assert [f["local"][11:] for f in shown["fires"]] == [
        "01:00:00-04:00", "01:30:00-04:00", "01:00:00-05:00", "01:30:00-05:00", "02:00:00-05:00",
    ]  # fmt: skip
    ended = run(
        "jobs", "next", "--schedule", "0 0 12 1 1 ? 2025-2026", "--after", "2024-06-01T00:00Z"
    )
    assert ended.exit_code == 0, ended.output
    assert (
        "2026-01-01T12:00:00+00:00" in ended.stdout
        and "(no more fire times: 2 of 5)" in ended.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "0 0 12 ? * 8"], "(Quartz): day-of-week field '8' is not acceptable"),
        (["--schedule", "0 12 ? * MON"], "'?' is Quartz syntax"),
        (["--schedule", "0 0 30 2 *"], "never fires"),
        (["--schedule", "0 0 12 1 1 ? 2025", "--after", "2025-06-01T00:00Z"], "never fires after"),
        (["--schedule", "* * * * *", "--time-zone", "Europe/Pari"], "did you mean 'Europe/Paris'?"),
        (["--schedule", "* * * * *", "--after", "yesterday"], "--after 'yesterday' is not an ISO"),
        ([], "pass JOB or --schedule CRON"),
        (["ops/nightly/backup", "--schedule", "* * * * *"], "pass JOB or --schedule CRON"),
        (["ops/nightly/backup", "--time-zone", "UTC"], "--time-zone goes with --schedule"),
        (["ops/nightly/nothing"], "no job with id or path 'ops/nightly/nothing'"),
        (["ops/nightly/backup", "--count", "0"], "0 is not in the range 1<=x<=1000"),
    ],
)
def test_bad_input_exits_2(run: Any, store: Store, args: list[str], message: str) -> None:
    _job(store, "* * * * *")
    result = run("jobs", "next", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_job_without_a_schedule_exits_2(run: Any, store: Store) -> None:
    job = _job(store, None)
    result = run("jobs", "next", job.id)
    assert result.exit_code == 2
    assert f"job ops/nightly/backup (id {job.id}) has no schedule" in result.output


def test_help_explains_the_syntaxes(run: Any) -> None:
    result = run("jobs", "next", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for part in ("6 fields, no '?' seconds first", "6 with a '?', or 7 Quartz", "1 = Sunday",
                 "0 and 7 = Sunday", "qwcontrol.scheduler.timeZone"):  # fmt: skip
        assert part in text, part
