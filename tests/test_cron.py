"""schemas.cron: 5 fields, or 6 with seconds first; next fire strictly after, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.cron import next_fire_ms, validate_cron


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


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
    ],
)
def test_next_fire_ms(schedule: str, after: str, expected: str) -> None:
    assert next_fire_ms(schedule, ms(after)) == ms(expected)


def test_validate_normalises_spaces() -> None:
    assert validate_cron("  */10   * * * * * ") == "*/10 * * * * *"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "has 4 field(s); expected 5"),
        ("* * * * * * *", "has 7 field(s)"),
        ("@hourly", "has 1 field(s)"),
        ("61 * * * *", "minute field '61'"),
        ("99 * * * * *", "second field '99'"),
        ("* * * * 8", "day-of-week field '8'"),
        ("* * * 13 *", "month field '13'"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_invalid_schedules_name_the_problem(schedule: str, message: str) -> None:
    with pytest.raises(ValueError, match="cron schedule") as caught:
        validate_cron(schedule)
    assert message in str(caught.value)
