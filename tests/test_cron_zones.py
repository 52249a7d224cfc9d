"""Schedules in a time zone, across the real daylight-saving changes of 2025:

* Europe/Paris: 2025-03-30 02:00 CET -> 03:00 CEST (01:00Z); 2025-10-26 03:00 CEST -> 02:00
  CET (01:00Z).
* America/New_York: 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z); 2025-11-02 02:00 EDT ->
  01:00 EST (06:00Z).

The rule (schemas/cron_zones.py): a local time that does not exist fires once, when the
clock jumps; one that exists twice fires once, at its first pass; an expression whose hour
field is ``*`` fires at every real instant it matches. ``after`` is the moved clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.cron import fire_times_ms, next_fire_ms
from schemas.errors import ConfigError, ScheduleError
from schemas.settings import Settings, load_settings
from schemas.timezones import time_zone, validate_time_zone


def fires(schedule: str, zone: str, after: str, count: int) -> list[str]:
    """The next ``count`` fire times after ``after`` (``MM-DD HH:MM±HH:MM`` in 2025), in the
    same form, local time of ``zone`` with its UTC offset."""
    after_ms = int(datetime.fromisoformat(f"2025-{after}").timestamp() * 1000)
    local = ZoneInfo(zone)
    return [
        datetime.fromtimestamp(t / 1000, local).isoformat(" ", timespec="minutes")[5:]
        for t in fire_times_ms(schedule, after_ms, count, zone)
    ]


P, NY = "Europe/Paris", "America/New_York"

TABLE = [
    # -- a time of day: the gap fires at the jump, a repeated time at its first pass --
    ("30 2 * * *", P, "03-29 12:00+01:00", ["03-30 03:00+02:00", "03-31 02:30+02:00"]),
    ("30 2 * * *", P, "10-25 12:00+02:00", ["10-26 02:30+02:00", "10-27 02:30+01:00"]),
    ("30 2 * * *", P, "10-26 02:10+01:00", ["10-27 02:30+01:00"]),  # 2nd pass: done
    ("30 2 * * *", P, "10-26 02:45+01:00", ["10-27 02:30+01:00"]),
    ("*/20 2 * * *", P, "03-30 01:50+01:00", ["03-30 03:00+02:00", "03-31 02:00+02:00"]),
    ("*/20 2 * * *", P, "10-26 01:50+02:00", [
        "10-26 02:00+02:00", "10-26 02:20+02:00", "10-26 02:40+02:00",
        "10-27 02:00+01:00",
    ]),
    ("0,30 2,3 * * *", P, "03-30 01:00+01:00", ["03-30 03:00+02:00", "03-30 03:30+02:00"]),
    ("0 30 2 ? * SUN", P, "03-29 00:00+01:00", ["03-30 03:00+02:00", "04-06 02:30+02:00"]),
    ("0 30 2 ? * SUN", P, "10-25 00:00+02:00", ["10-26 02:30+02:00", "11-02 02:30+01:00"]),
    ("30 2 * * *", NY, "03-08 12:00-05:00", ["03-09 03:00-04:00", "03-10 02:30-04:00"]),
    ("30 1 * * *", NY, "11-01 12:00-04:00", ["11-02 01:30-04:00", "11-03 01:30-05:00"]),
    ("30 1 * * *", NY, "11-02 01:10-05:00", ["11-03 01:30-05:00"]),
    ("0 0 2 ? * SUN", NY, "03-08 00:00-05:00", ["03-09 03:00-04:00", "03-16 02:00-04:00"]),
    ("0 0 1 ? * 1", NY, "11-01 00:00-04:00", ["11-02 01:00-04:00", "11-09 01:00-05:00"]),
    # -- every hour: every real instant, both passes of a repeated hour, none in the gap --
    ("*/30 * * * *", P, "03-30 01:00+01:00", [
        "03-30 01:30+01:00", "03-30 03:00+02:00", "03-30 03:30+02:00",
    ]),
    ("*/30 * * * *", P, "10-26 01:45+02:00", [
        "10-26 02:00+02:00", "10-26 02:30+02:00", "10-26 02:00+01:00",
        "10-26 02:30+01:00", "10-26 03:00+01:00",
    ]),
    ("*/15 * * * *", P, "10-26 02:50+02:00", ["10-26 02:00+01:00", "10-26 02:15+01:00"]),
    ("0 * * * *", P, "03-30 00:30+01:00", [
        "03-30 01:00+01:00", "03-30 03:00+02:00", "03-30 04:00+02:00",
    ]),
    ("0 * * * *", P, "10-26 01:30+02:00", [
        "10-26 02:00+02:00", "10-26 02:00+01:00", "10-26 03:00+01:00",
    ]),
    ("0 0/30 * ? * *", P, "10-26 02:45+02:00", ["10-26 02:00+01:00", "10-26 02:30+01:00"]),
    ("*/30 * * * *", NY, "03-09 01:15-05:00", [
        "03-09 01:30-05:00", "03-09 03:00-04:00", "03-09 03:30-04:00",
    ]),
    ("*/30 * * * *", NY, "11-02 00:45-04:00", [
        "11-02 01:00-04:00", "11-02 01:30-04:00", "11-02 01:00-05:00",
        "11-02 01:30-05:00", "11-02 02:00-05:00",
    ]),
    ("0 * * * *", NY, "03-09 00:30-05:00", [
        "03-09 01:00-05:00", "03-09 03:00-04:00", "03-09 04:00-04:00",
    ]),
    # -- the zone moves the time of day; nothing else changes --
    ("0 0 12 ? * MON-FRI", P, "01-03 12:00+01:00", ["01-06 12:00+01:00"]),
    ("0 0 12 ? * MON-FRI", NY, "07-04 12:00-04:00", ["07-07 12:00-04:00"]),
    ("0 0 L * *", NY, "02-01 00:00-05:00", ["02-28 00:00-05:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("schedule", "zone", "after", "expected"), TABLE)
def test_fire_times_across_daylight_saving(
    schedule: str, zone: str, after: str, expected: list[str]
) -> None:
    assert fires(schedule, zone, after, len(expected)) == expected


def test_seconds_fields_cross_both_changes() -> None:
    every_30_s = "*/30 * * * * *"
    assert fires(every_30_s, P, "03-30 01:59:00+01:00", 3) == [
        "03-30 01:59+01:00",
        "03-30 03:00+02:00",
        "03-30 03:00+02:00",
    ]  # 01:59:30, 03:00:00 and 03:00:30
    after_ms = int(datetime.fromisoformat("2025-10-26T02:59:00+02:00").timestamp() * 1000)
    times = fire_times_ms(every_30_s, after_ms, 4, P)
    assert [t - after_ms for t in times] == [30_000, 60_000, 90_000, 120_000]  # no gap, no jump


def test_no_zone_is_utc() -> None:
    after_ms = int(datetime(2025, 3, 30, tzinfo=UTC).timestamp() * 1000)
    assert next_fire_ms("30 2 * * *", after_ms) == next_fire_ms("30 2 * * *", after_ms, "UTC")
    assert next_fire_ms("30 2 * * *", after_ms) == after_ms + (2 * 3600 + 30 * 60) * 1000


# --- an oracle: the fire instants by the rule's definition, instant by instant -----------

Match = Callable[[datetime], bool]
ORACLE: list[tuple[str, bool, int, Match]] = [
    # (schedule, its hour field is every hour, resolution in seconds, which walls match)
    ("*/15 * * * *", True, 60, lambda w: w.minute % 15 == 0),
    ("30 2 * * *", False, 60, lambda w: (w.hour, w.minute) == (2, 30)),
    ("*/20 1-2 * * *", False, 60, lambda w: w.hour in (1, 2) and w.minute % 20 == 0),
    ("0,30 2,3 * * *", False, 60, lambda w: w.hour in (2, 3) and w.minute in (0, 30)),
    ("0,40 * * * * *", True, 1, lambda w: w.second in (0, 40)),
    ("0 15 * ? * *", True, 60, lambda w: w.minute == 15),
    ("0 0 1-3 ? * *", False, 60, lambda w: w.hour in (1, 2, 3) and w.minute == 0),
]
CHANGES = [  # the instant the offset changes (UTC), checked below
    (P, "2025-03-30T01:00"), (P, "2025-10-26T01:00"),
    (NY, "2025-03-09T07:00"), (NY, "2025-11-02T06:00"),
    ("Australia/Lord_Howe", "2025-04-05T15:00"), ("Australia/Lord_Howe", "2025-10-04T15:30"),
]  # fmt: skip


def expected_fires_s(
    zone: ZoneInfo, start_s: int, end_s: int, match: Match, every: bool, step_s: int
) -> list[int]:
    """Every instant of ``(start_s, end_s]`` (by ``step_s``) that fires, by the rule."""
    found = []
    step = timedelta(seconds=step_s)
    previous = datetime.fromtimestamp(start_s, zone)
    for t in range(start_s + step_s, end_s + 1, step_s):
        here = datetime.fromtimestamp(t, zone)
        wall, before = here.replace(tzinfo=None), previous.replace(tzinfo=None)
        if every:
            fired = match(wall)
        elif wall - before > step:  # the clock jumped: the wall times it skipped fire now
            skipped = (before + step * i for i in range(1, (wall - before) // step))
            fired = match(wall) or any(match(w) for w in skipped)
        else:  # a repeated wall time fires at its first pass only
            fired = match(wall) and here.fold == 0
        if fired:
            found.append(t)
        previous = here
    return found


@pytest.mark.parametrize(("zone_name", "change"), CHANGES)
@pytest.mark.parametrize(
    ("schedule", "every", "step_s", "match"), ORACLE, ids=[o[0] for o in ORACLE]
)
def test_fire_times_match_the_definition_instant_by_instant(
    zone_name: str, change: str, schedule: str, every: bool, step_s: int, match: Match
) -> None:
    zone = ZoneInfo(zone_name)
    change_s = int(datetime.fromisoformat(change).replace(tzinfo=UTC).timestamp())
    assert _offset(zone, change_s - 1) != _offset(zone, change_s)  # a real change
    start_s, end_s = change_s - 4 * 3600, change_s + 4 * 3600
    expected = expected_fires_s(zone, start_s, end_s, match, every, step_s)
    got = [t // 1000 for t in fire_times_ms(schedule, start_s * 1000, len(expected) + 1, zone_name)]
    assert got[:-1] == expected and got[-1] > end_s


def _offset(zone: ZoneInfo, t: int) -> timedelta | None:
    return datetime.fromtimestamp(t, zone).utcoffset()


# --- zone names and the cluster default --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Europe/Pari", "unknown time zone 'Europe/Pari': did you mean 'Europe/Paris'?"),
        ("europe/paris", "did you mean 'Europe/Paris'?"),
        ("Mars/Olympus", "expected an IANA name such as Europe/Paris"),
        ("", "unknown time zone ''"),
        ("Europe", "unknown time zone 'Europe'"),  # a directory of the database
        ("/etc/passwd", "unknown time zone '/etc/passwd'"),
        ("../../etc/passwd", "unknown time zone"),
    ],
)
def test_unknown_zones_are_refused_by_name(name: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        time_zone(name)
    assert message in str(caught.value)
    with pytest.raises(ScheduleError, match="unknown time zone"):
        next_fire_ms("* * * * *", 0, name)


def test_zone_names_are_kept_as_written() -> None:
    assert validate_time_zone(" America/New_York ") == "America/New_York"
    assert validate_time_zone("Etc/GMT+5") == "Etc/GMT+5"


def test_the_cluster_default_zone_setting() -> None:
    assert Settings().scheduler_time_zone == "UTC"
    env = {"QWC_SCHEDULER_TIMEZONE": " Europe/Paris "}
    assert load_settings(environ=env).scheduler_time_zone == "Europe/Paris"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"QWC_SCHEDULER_TIMEZONE": "Europe/Pari"})
    (problem,) = caught.value.problems
    assert problem.key == "qwcontrol.scheduler.timeZone"
    assert problem.source == "environment (QWC_SCHEDULER_TIMEZONE)"
    assert "an IANA time zone name" in problem.allowed
    assert "did you mean 'Europe/Paris'?" in problem.allowed


def test_zones_without_a_system_database() -> None:
    """A slim container image has no /usr/share/zoneinfo: the tzdata package serves."""
    code = "from schemas.cron import next_fire_ms as n; print(n('0 12 * * *', 0, 'Europe/Paris'))"
    env = {**os.environ, "PYTHONTZPATH": ""}  # no system database
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(11 * 3600 * 1000)  # 12:00 CET on 1970-01-01
