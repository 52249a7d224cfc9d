"""Cron schedules of jobs: three syntaxes, evaluated in a time zone; times are epoch ms.

Which syntax a text is read as depends on its number of fields and on ``?``, nothing else:

=========================  ==============================================  ==================
fields                     read as                                         day-of-week
=========================  ==============================================  ==================
5                          Unix: ``minute hour day-of-month month dow``    0-7, 0 and 7 = SUN
6, no ``?``                seconds first: ``second`` + the 5 Unix fields   0-7, 0 and 7 = SUN
6 with a ``?``, or 7       Quartz: ``second minute hour dom month dow      1-7, 1 = SUN,
                           [year]``                                        7 = SAT
=========================  ==============================================  ==================

Quartz requires ``?`` in exactly one of day-of-month and day-of-week, so a 6-field Quartz
text always has one, and a 6-field text without one is ours (seconds first, Unix day
numbers): ``0 0 12 ? * 2`` is Monday noon (Quartz), ``0 0 12 * * 2`` Tuesday noon (ours).
A 5-field text with ``?`` is refused (write Quartz with its seconds field). Names
(``MON-FRI``, ``JAN``) mean the same in every syntax. Unix and seconds-first texts accept
what croniter accepts (``*/5``, ``1,15``, ``MON-FRI``, ``L``, ``15W``, ``5#3``, ``L5``; when
both day fields are restricted a day matching either fires, as in Unix cron); Quartz adds
``L-3``, ``LW``, ``6L`` and the year (:mod:`schemas.cron_quartz`). Random and hashed values
(``R``, ``H``) are refused: a schedule must be the same every time it is read.

Time zones: the expression is matched against the local wall time of an IANA zone (UTC
when none is given); daylight-saving changes follow :mod:`schemas.cron_zones` (a wall time
that exists twice fires once, one that does not exist fires when the clock jumps, an
every-hour expression fires at every real instant it matches). Pure: no clock is read; the
caller passes the time to count from. Errors are :class:`ScheduleError` naming the field
and the syntax the text was read as.
"""

from __future__ import annotations

__all__ = [
    "CronSyntax",
    "cron_syntax",
    "fire_times_ms",
    "next_fire_ms",
    "validate_cron",
]

import calendar
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

from schemas.cron_quartz import QUARTZ_FIELDS, LastDayRule, translate_quartz
from schemas.cron_zones import next_instant_s
from schemas.errors import ScheduleError
from schemas.timezones import DEFAULT_TIME_ZONE, time_zone

UNIX_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_MAX_YEARS = 130  # croniter's search horizon: the whole 1970-2099 range of the year field
# Any fixed instant will do: validation only checks that the schedule fires at all.
_VALIDATION_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_RANDOM = re.compile(r"[HR](\(\d+-\d+\))?(/\d+)?", re.IGNORECASE)


class CronSyntax(StrEnum):
    """How a schedule text is read (see the module docstring)."""

    UNIX = "unix"
    SECONDS_FIRST = "seconds-first"
    QUARTZ = "quartz"

    @property
    def label(self) -> str:
        """How messages name the syntax."""
        return {
            CronSyntax.UNIX: "Unix cron, 5 fields",
            CronSyntax.SECONDS_FIRST: "6 fields, seconds first",
            CronSyntax.QUARTZ: "Quartz",
        }[self]


_ALLOWED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 = Sunday)",
    "year": "1970-2099",
}
_QUARTZ_ALLOWED = {
    **_ALLOWED,
    "day-of-month": "1-31, ?, L, L-n, nW, LW",
    "day-of-week": "1-7 or SUN-SAT (Quartz: 1 = Sunday, 7 = Saturday), ?, L, nL, n#k",
}


@dataclass(frozen=True)
class _Cron:
    """A parsed schedule: croniter's fields (seconds first when there are 6 or 7), the
    Quartz day rule croniter lacks, and whether the hour field is every hour."""

    syntax: CronSyntax
    fields: tuple[str, ...]
    day_rule: LastDayRule | None
    every_hour: bool
    _iter: croniter = field(repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def after(self, wall: datetime) -> datetime:
        """The first matching naive wall time strictly after ``wall``. Raises croniter's
        ``CroniterBadDateError`` when there is none within 130 years."""
        found = self._next(wall)
        rule = self.day_rule
        while rule is not None and found.day != (day := rule.day(found.year, found.month)):
            if found.year - wall.year > _MAX_YEARS:
                raise CroniterBadDateError("no day of the rule")
            if day is not None and found.day < day:
                found = self._next(datetime(found.year, found.month, day) - timedelta(seconds=1))
            else:  # on to the next month
                last = calendar.monthrange(found.year, found.month)[1]
                found = self._next(found.replace(day=last, hour=23, minute=59, second=59))
        return found

    def _next(self, wall: datetime) -> datetime:
        with self._lock:  # one croniter per expression: cheaper than building one per call
            found: datetime = self._iter.get_next(datetime, start_time=wall)
        return found


def cron_syntax(text: str) -> CronSyntax:
    """The syntax ``text`` is read as; ScheduleError for a wrong number of fields, or a
    ``?`` in a 5-field text."""
    fields = text.split()
    if len(fields) == 5:
        if any("?" in f for f in fields):
            raise ScheduleError(
                f"invalid cron schedule {text!r}: '?' is Quartz syntax; a Quartz expression "
                "has 6 or 7 fields, seconds first (e.g. '0 0 12 ? * MON-FRI')"
            )
        return CronSyntax.UNIX
    if len(fields) == 6:
        return CronSyntax.QUARTZ if any("?" in f for f in fields) else CronSyntax.SECONDS_FIRST
    if len(fields) == 7:
        return CronSyntax.QUARTZ
    raise ScheduleError(
        f"cron schedule {text!r} has {len(fields)} field(s); expected 5 ({' '.join(UNIX_FIELDS)}), "
        "6 (second first) or Quartz's 6 or 7 (second first, '?' in a day field, year last)"
    )


@lru_cache(maxsize=1024)
def _parse(text: str) -> _Cron:
    """``text`` (fields separated by single spaces) parsed; ScheduleError when invalid."""
    syntax = cron_syntax(text)
    original = text.split()
    names = UNIX_FIELDS if syntax is CronSyntax.UNIX else QUARTZ_FIELDS
    try:
        _refuse_random(names, original)
        fields, rule = tuple(original), None
        if syntax is CronSyntax.QUARTZ:
            quartz = translate_quartz(original)
            fields, rule = quartz.fields, quartz.day_rule
        try:
            iterator = _croniter(fields)
        except CroniterError as exc:
            raise ValueError(_culprit(syntax, names, original, fields) or _reason(exc)) from None
    except ValueError as exc:
        raise ScheduleError(f"invalid cron schedule {text!r} ({syntax.label}): {exc}") from None
    every_hour = iterator.expanded[1] == ["*"]  # croniter's hour field, whatever the syntax
    return _Cron(syntax, fields, rule, every_hour, iterator)


def _croniter(fields: Sequence[str]) -> croniter:
    return croniter(
        " ".join(fields),
        datetime(2000, 1, 1),
        second_at_beginning=len(fields) > 5,
        max_years_between_matches=_MAX_YEARS,
    )


def _refuse_random(names: Sequence[str], fields: Sequence[str]) -> None:
    for name, value in zip(names, fields, strict=False):
        if any(_RANDOM.fullmatch(item) for item in value.split(",")):
            raise ValueError(
                f"{name} field {value!r} is not acceptable: random (R) and hashed (H) values "
                "are not supported"
            )


def _culprit(
    syntax: CronSyntax, names: Sequence[str], original: Sequence[str], fields: Sequence[str]
) -> str | None:
    """The first field croniter refuses on its own (the others ``*``), named with its text
    as written and what the syntax allows there; None when only the combination fails."""
    allowed = _QUARTZ_ALLOWED if syntax is CronSyntax.QUARTZ else _ALLOWED
    for i, value in enumerate(fields):
        alone = ["*"] * len(fields)
        alone[i] = value
        try:
            _croniter(alone)
        except CroniterError:
            return (
                f"{names[i]} field {original[i]!r} is not acceptable: allowed "
                f"{allowed[names[i]]}, with , - * /"
            )
    return None


def _reason(exc: CroniterError) -> str:
    """croniter's message without the expression it quotes."""
    return re.sub(r"\[[^\]]*\]\s*", "", str(exc)).strip() or "not acceptable"


def next_fire_ms(text: str, after_ms: int, tz: str | None = None) -> int:
    """The first fire time of schedule ``text`` strictly after ``after_ms`` (epoch ms),
    matched in time zone ``tz`` (an IANA name; None: UTC). Fire times are whole seconds.

    Raises :class:`ScheduleError` when ``text`` is not a valid schedule, ``tz`` not a known
    zone, or the schedule never fires after ``after_ms``.
    """
    times = fire_times_ms(text, after_ms, 1, tz)
    if not times:
        when = datetime.fromtimestamp(after_ms / 1000, UTC).isoformat(timespec="seconds")
        raise ScheduleError(f"cron schedule {text!r} never fires after {when}")
    return times[0]


def fire_times_ms(text: str, after_ms: int, count: int, tz: str | None = None) -> list[int]:
    """The next ``count`` fire times of ``text`` strictly after ``after_ms`` (epoch ms), in
    zone ``tz`` (None: UTC); fewer, or none, when it stops firing (a Quartz year range
    ends, 31 February). Raises :class:`ScheduleError` for an invalid schedule or zone."""
    cron = _parse(" ".join(text.split()))
    zone = time_zone(DEFAULT_TIME_ZONE if tz is None else tz)
    times: list[int] = []
    # From the whole second: a fire strictly after it is also strictly after ``after_ms``.
    after_s = after_ms // 1000
    try:
        while len(times) < count:
            after_s = next_instant_s(cron.after, after_s, zone, every_hour=cron.every_hour)
            times.append(after_s * 1000)
    except (CroniterBadDateError, OverflowError):  # no more in croniter's horizon, or year 9999
        pass
    return times


def validate_cron(text: str) -> str:
    """``text`` normalised (fields separated by one space) when it is a valid schedule.

    Raises :class:`ScheduleError` (a ``ValueError``) naming the problem: wrong number of
    fields, the bad field and the syntax the text was read as, or a schedule that never
    fires (``0 0 30 2 *``).
    """
    normalised = " ".join(text.split())
    if not fire_times_ms(normalised, _VALIDATION_EPOCH_MS, 1):
        raise ScheduleError(f"cron schedule {normalised!r} never fires")
    return normalised
