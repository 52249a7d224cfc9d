"""schemas.cron in UTC: the three syntaxes, how a text is recognised, Quartz's special
characters, and errors that name the field. Time zones: tests/test_cron_zones.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.cron import CronSyntax, cron_syntax, fire_times_ms, next_fire_ms, validate_cron
from schemas.errors import ScheduleError


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def iso(fire_ms: int) -> str:
    return datetime.fromtimestamp(fire_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/5 * * * * *", "2024-01-01T00:00:00", "2024-01-01T00:00:05"),  # seconds first
        ("30 0 12 * * *", "2024-01-01T00:00:00", "2024-01-01T12:00:30"),
        ("0 12 * * *", "2024-01-01T12:00:00", "2024-01-02T12:00:00"),  # strictly after
        ("0 12 * * *", "2024-01-01T11:59:59.999", "2024-01-01T12:00:00"),
        ("* * * * * *", "2024-01-01T00:00:05.500", "2024-01-01T00:00:06"),
        ("0 0 * * MON-FRI", "2024-01-05T12:00:00", "2024-01-08T00:00:00"),  # Fri -> Mon
        ("0 0 L * *", "2024-02-01T00:00:00", "2024-02-29T00:00:00"),
        ("0 0 * * 0", "2024-01-01T00:00:00", "2024-01-07T00:00:00"),  # Unix 0 = Sunday
        ("0 0 * * 7", "2024-01-01T00:00:00", "2024-01-07T00:00:00"),  # Unix 7 = Sunday too
        ("0 0 12 * * 1", "2024-01-02T00:00:00", "2024-01-08T12:00:00"),  # ours: 1 = Monday
        ("0 0 1 * 1", "2024-01-02T00:00:00", "2024-01-08T00:00:00"),  # Unix: dom OR dow
    ],
)
def test_unix_and_seconds_first_are_unchanged(schedule: str, after: str, expected: str) -> None:
    assert next_fire_ms(schedule, ms(after)) == ms(expected)


@pytest.mark.parametrize(
    ("schedule", "syntax"),
    [
        ("0 12 * * *", CronSyntax.UNIX),
        ("0 0 12 * * *", CronSyntax.SECONDS_FIRST),
        ("0 0 12 * * MON-FRI", CronSyntax.SECONDS_FIRST),  # no '?': ours, Unix day numbers
        ("0 0 12 ? * MON-FRI", CronSyntax.QUARTZ),  # '?' in day-of-month
        ("0 0 12 1 * ?", CronSyntax.QUARTZ),  # '?' in day-of-week
        ("0 0 12 ? * MON-FRI *", CronSyntax.QUARTZ),  # 7 fields: the year
        ("  0  0 12 ?  * 2 ", CronSyntax.QUARTZ),
    ],
)
def test_syntax_is_recognised_by_field_count_and_question_mark(
    schedule: str, syntax: CronSyntax
) -> None:
    assert cron_syntax(schedule) is syntax


# Quartz counts days of the week 1 = Sunday .. 7 = Saturday. 2024-01-01 is a Monday.
QUARTZ = [
    ("0 0 12 ? * 1", "2024-01-01T00:00:00", "2024-01-07T12:00:00"),  # 1 = Sunday
    ("0 0 12 ? * 2", "2024-01-01T13:00:00", "2024-01-08T12:00:00"),  # 2 = Monday
    ("0 0 12 ? * 7", "2024-01-01T00:00:00", "2024-01-06T12:00:00"),  # 7 = Saturday
    ("0 0 12 ? * SUN", "2024-01-01T00:00:00", "2024-01-07T12:00:00"),  # names as in Unix
    ("0 0 12 ? * 2-6", "2024-01-05T13:00:00", "2024-01-08T12:00:00"),  # MON-FRI: Fri -> Mon
    ("0 0 12 ? * MON-FRI", "2024-01-05T13:00:00", "2024-01-08T12:00:00"),
    ("0 0 12 ? * 6-2", "2024-01-02T13:00:00", "2024-01-05T12:00:00"),  # FRI-MON wraps
    ("0 0 12 ? * */2", "2024-01-01T00:00:00", "2024-01-02T12:00:00"),  # 1,3,5,7: SUN TUE ..
    ("0 0 12 ? * 3/2", "2024-01-03T00:00:00", "2024-01-04T12:00:00"),  # 3,5,7: TUE THU SAT
    ("0 0 12 ? * L", "2024-01-01T00:00:00", "2024-01-06T12:00:00"),  # L alone: Saturday
    ("0 0 0 ? * 6L", "2024-01-01T00:00:00", "2024-01-26T00:00:00"),  # last Friday
    ("0 0 0 ? * FRIL", "2024-01-27T00:00:00", "2024-02-23T00:00:00"),
    ("0 0 0 ? * 1L", "2024-03-01T00:00:00", "2024-03-31T00:00:00"),  # last Sunday
    ("0 0 0 ? * 6#3", "2024-01-01T00:00:00", "2024-01-19T00:00:00"),  # third Friday
    ("0 0 0 ? * MON#1", "2024-01-02T00:00:00", "2024-02-05T00:00:00"),
    ("0 0 0 ? * 2#5", "2024-01-01T00:00:00", "2024-01-29T00:00:00"),  # fifth Monday..
    ("0 0 0 ? * 2#5", "2024-01-30T00:00:00", "2024-04-29T00:00:00"),  # ..only some months
    ("0 0 0 L * ?", "2024-02-01T00:00:00", "2024-02-29T00:00:00"),  # last day
    ("0 0 0 L-3 * ?", "2024-01-01T00:00:00", "2024-01-28T00:00:00"),  # third-to-last day
    ("0 0 0 L-3 * ?", "2024-02-01T00:00:00", "2024-02-26T00:00:00"),
    ("0 0 0 L-30 * ?", "2024-01-05T00:00:00", "2024-03-01T00:00:00"),  # not in Feb
    ("0 0 0 15W * ?", "2024-06-01T00:00:00", "2024-06-14T00:00:00"),  # Sat 15 -> Fri 14
    ("0 0 0 15W * ?", "2024-09-01T00:00:00", "2024-09-16T00:00:00"),  # Sun 15 -> Mon 16
    ("0 0 0 1W * ?", "2024-06-01T00:00:00", "2024-06-03T00:00:00"),  # Sat 1 -> Mon 3
    ("0 0 0 LW * ?", "2024-03-01T00:00:00", "2024-03-29T00:00:00"),  # Sun 31 -> Fri 29
    ("0 0 0 LW * ?", "2024-08-01T00:00:00", "2024-08-30T00:00:00"),  # Sat 31 -> Fri 30
    ("0 0 0 LW * ?", "2024-04-01T00:00:00", "2024-04-30T00:00:00"),  # Tue 30
    ("0 0 0 L-2W * ?", "2024-04-01T00:00:00", "2024-04-29T00:00:00"),  # Sun 28 -> Mon 29
    ("0 0 0 L-3W * ?", "2024-04-01T00:00:00", "2024-04-26T00:00:00"),  # Sat 27 -> Fri 26
    ("0 0 12 ? * MON-FRI *", "2024-01-05T13:00:00", "2024-01-08T12:00:00"),  # year *
    ("0 0 12 1 JAN ? 2026", "2024-01-05T00:00:00", "2026-01-01T12:00:00"),  # a year
    ("0 15 10 ? * 6#3 2025-2027", "2024-01-01T00:00:00", "2025-01-17T10:15:00"),
    ("0/15 * * ? * *", "2024-01-01T00:00:07", "2024-01-01T00:00:15"),  # 0/15 seconds
    ("5/15 * * ? * *", "2024-01-01T00:00:07", "2024-01-01T00:00:20"),
    ("0 0 12 ? JAN,JUL MON", "2024-02-01T00:00:00", "2024-07-01T12:00:00"),
    ("0 0 12 ? * mon-fri", "2024-01-05T13:00:00", "2024-01-08T12:00:00"),  # any case
]


@pytest.mark.parametrize(("schedule", "after", "expected"), QUARTZ)
def test_quartz(schedule: str, after: str, expected: str) -> None:
    assert iso(next_fire_ms(schedule, ms(after))) == expected


def test_quartz_and_ours_differ_only_in_day_numbers() -> None:
    after = ms("2024-01-01T00:00:00")  # a Monday
    assert iso(next_fire_ms("0 0 12 ? * 2", after)) == "2024-01-01T12:00:00"  # Quartz: MON
    assert iso(next_fire_ms("0 0 12 * * 2", after)) == "2024-01-02T12:00:00"  # ours: TUE
    for day in ("MON", "SAT", "SUN"):
        assert next_fire_ms(f"0 0 12 ? * {day}", after) == next_fire_ms(f"0 0 12 * * {day}", after)


def test_fire_times_stop_when_the_years_end() -> None:
    times = fire_times_ms("0 0 12 1 1 ? 2025-2026", ms("2024-06-01T00:00:00"), 5)
    assert [iso(t) for t in times] == ["2025-01-01T12:00:00", "2026-01-01T12:00:00"]
    assert fire_times_ms("0 0 12 1 1 ? 2025", ms("2025-06-01T00:00:00"), 5) == []
    with pytest.raises(ScheduleError, match="never fires after 2025-06-01T00:00:00"):
        next_fire_ms("0 0 12 1 1 ? 2025", ms("2025-06-01T00:00:00"))


def test_validate_normalises_spaces() -> None:
    assert validate_cron("  */10   * * * * * ") == "*/10 * * * * *"
    assert validate_cron("0 0 12 ?  * MON-FRI") == "0 0 12 ? * MON-FRI"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "has 4 field(s); expected 5"),
        ("* * * * * * * *", "has 8 field(s)"),
        ("@hourly", "has 1 field(s)"),
        ("61 * * * *", "(Unix cron, 5 fields): minute field '61' is not acceptable: allowed 0-59"),
        ("99 * * * * *", "(6 fields, seconds first): second field '99'"),
        ("* * * * 8", "day-of-week field '8' is not acceptable: allowed 0-7 or SUN-SAT"),
        ("* * * 13 *", "month field '13'"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 12 ? * 1 1999", "never fires"),  # counted from 2000
        ("R * * * *", "minute field 'R' is not acceptable: random (R) and hashed (H)"),
        ("0 H * * *", "hour field 'H'"),
        ("0 12 ? * MON", "'?' is Quartz syntax; a Quartz expression has 6 or 7 fields"),
        # Quartz
        ("0 0 12 ? * 0", "(Quartz): day-of-week field '0' is not acceptable: allowed 1-7"),
        ("0 0 12 ? * 8", "day-of-week field '8' is not acceptable: allowed 1-7"),
        ("0 0 12 ? * 0-3", "day-of-week field '0-3'"),
        ("0 0 12 ? * FUN", "day-of-week field 'FUN'"),
        ("0 0 12 ? * 1#6", "day-of-week field '1#6' is not acceptable: '#' takes 1 to 5"),
        ("0 0 12 ? * 2#1,3", "day-of-week field '2#1,3' is not acceptable: 'L' and '#' stand"),
        ("0 0 12 ? * 8L", "day-of-week field '8L'"),
        ("0 0 12 * * MON *", "Quartz needs '?' in day-of-month or day-of-week"),
        ("0 0 12 ? * ?", "day-of-month and day-of-week are both '?'"),
        ("? 0 12 * * MON", "second field '?' is not acceptable: '?' stands alone, in day-of"),
        ("0 0 12 ?5 * 1", "day-of-month field '?5'"),
        ("0 0 12 L-31 * ?", "day-of-month field 'L-31' is not acceptable: L-n needs n <= 30"),
        ("0 0 12 1,L * ?", "day-of-month field '1,L' is not acceptable: L, L-n, LW and L-nW"),
        ("0 0 12 32 * ?", "day-of-month field '32' is not acceptable: allowed 1-31, ?, L"),
        ("0 0 12 ? 13 MON", "month field '13'"),
        ("0 0 24 ? * MON", "(Quartz): hour field '24' is not acceptable: allowed 0-23"),
        ("0 0 12 ? * MON 1969", "year field '1969' is not acceptable: allowed 1970-2099"),
        ("0 0 12 ? * MON 2100", "year field '2100'"),
        ("0 0 0 30 2 ? *", "never fires"),
    ],
)
def test_invalid_schedules_name_the_problem(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match="cron schedule") as caught:
        validate_cron(schedule)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)  # pydantic validators and callers catch it
