"""Cron schedules of jobs: 5 fields, or 6 with SECONDS FIRST; times are UTC epoch ms.

``sec min hour day-of-month month day-of-week`` (6 fields) or ``min hour dom month dow``
(5 fields), with the usual ranges, lists, steps and names (``*/5``, ``1,15``, ``MON-FRI``,
``L`` for the last day of the month). Parsed by ``croniter``, whose own 6-field form puts
the seconds LAST, so a 6-field text is rotated before it is handed over. Pure: no clock is
read; the caller passes the time to count from.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

__all__ = ["next_fire_ms", "validate_cron"]

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# Any fixed instant will do: validation only checks that the schedule fires at all.
_VALIDATION_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


def _fields(text: str) -> list[str]:
    """The fields of ``text`` in croniter's order (seconds last); raises ``ValueError`` for
    a wrong field count."""
    fields = text.split()
    if len(fields) == 5:
        return fields
    if len(fields) == 6:
        return fields[1:] + fields[:1]
    raise ValueError(
        f"cron schedule {text!r} has {len(fields)} field(s); expected 5 "
        f"({' '.join(FIELD_NAMES)}) or 6 (second first)"
    )


def _why(fields: list[str], exc: CroniterError) -> str:
    """Name the first field croniter refuses on its own, else croniter's reason."""
    names = [*FIELD_NAMES, "second"]
    for i, field in enumerate(fields):
        alone = ["*"] * len(fields)
        alone[i] = field
        try:
            croniter(" ".join(alone))
        except CroniterError as field_exc:
            reason = re.sub(r"^\[[^\]]*\]\s*", "", str(field_exc))
            return f"{names[i]} field {field!r} {reason}"
    return str(exc)


def next_fire_ms(text: str, after_ms: int) -> int:
    """The first fire time of schedule ``text`` strictly after ``after_ms`` (epoch ms, UTC).

    Raises ``ValueError`` when ``text`` is not a valid schedule or never fires.
    """
    fields = _fields(text)
    # From the whole second: croniter answers the first whole second strictly after it,
    # which is also strictly after ``after_ms``.
    start = datetime.fromtimestamp(after_ms // 1000, UTC)
    try:
        fire_s: float = croniter(" ".join(fields), start).get_next(float)
    except CroniterBadDateError as exc:
        raise ValueError(f"cron schedule {text!r} never fires") from exc
    except CroniterError as exc:
        raise ValueError(f"invalid cron schedule {text!r}: {_why(fields, exc)}") from exc
    return round(fire_s) * 1000


def validate_cron(text: str) -> str:
    """``text`` normalised (fields separated by one space) when it is a valid schedule.

    Raises ``ValueError`` naming the problem: wrong number of fields, the bad field, or a
    schedule that never fires (``0 0 30 2 *``).
    """
    normalised = " ".join(text.split())
    next_fire_ms(normalised, _VALIDATION_EPOCH_MS)
    return normalised
