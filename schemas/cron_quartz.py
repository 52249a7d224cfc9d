"""Quartz cron fields translated to croniter's vocabulary (pure; used by :mod:`schemas.cron`).

Quartz writes ``second minute hour day-of-month month day-of-week [year]``, needs ``?`` in
exactly one of the two day fields, and counts the days of the week 1=SUN .. 7=SAT (Unix
cron: 0=SUN .. 6=SAT, 7=SUN too). croniter evaluates the translated fields; the day-of-month
forms it lacks (``L-n``, ``LW``, ``L-nW``) become a :class:`LastDayRule` that
:mod:`schemas.cron` applies on top of it.

=====================  ==================  ==========================================
Quartz                 croniter            meaning
=====================  ==================  ==========================================
``?``                  ``*``               no specific value (day fields only)
dom ``L``              ``L``               the last day of the month
dom ``15W``            ``15W``             the weekday (MON-FRI) nearest the 15th,
                                           never in another month
dom ``L-3``            ``*`` + rule        the third-to-last day of the month
dom ``LW``, ``L-3W``   ``*`` + rule        the weekday nearest the last (third-to-last) day
dow ``1``..``7``       ``0``..``6``        SUN..SAT (in lists, ranges and steps too)
dow ``SUN``..``SAT``   the same names      names mean the same days in both
dow ``L``              ``6``               Saturday (Quartz: ``L`` alone is 7)
dow ``6L``, ``FRIL``   ``L5``              the last Friday of the month
dow ``6#3``            ``5#3``             the third Friday of the month (1 to 5)
year ``2025-2030``     the same            1970-2099 (croniter's range)
=====================  ==================  ==========================================

``L``, ``W``, ``nL`` and ``n#k`` stand alone in their field, as Quartz requires.
"""

from __future__ import annotations

__all__ = ["QUARTZ_FIELDS", "LastDayRule", "QuartzFields", "translate_quartz"]

import calendar
import re
from dataclasses import dataclass

QUARTZ_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year")
_DOM, _DOW = 3, 5
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # Quartz 1..7, Unix 0..6
_MAX_LAST_DAY_OFFSET = 30  # Quartz's own limit for L-n

_LAST_DAY = re.compile(r"L(?:-(?P<offset>\d+))?(?P<weekday>W)?")
_DOW_LAST = re.compile(r"(?P<day>\d+|[A-Z]+)L")
_DOW_NTH = re.compile(r"(?P<day>\d+|[A-Z]+)#(?P<nth>\d+)")
_DOW_ITEM = re.compile(r"(?P<start>\*|\d+|[A-Z]+)(?:-(?P<end>\d+|[A-Z]+))?(?:/(?P<step>\d+))?")


@dataclass(frozen=True)
class LastDayRule:
    """Day-of-month ``L-offset`` (``offset`` days before the last day of the month); with
    ``weekday``, moved to the nearest weekday within the month (``LW``, ``L-3W``)."""

    offset: int
    weekday: bool

    def day(self, year: int, month: int) -> int | None:
        """The day of ``month`` this rule names, None when the month is too short."""
        last = calendar.monthrange(year, month)[1]
        day = last - self.offset
        if day < 1:
            return None
        return nearest_weekday(year, month, day) if self.weekday else day


@dataclass(frozen=True)
class QuartzFields:
    """Fields in croniter's vocabulary, seconds first as given; ``day_rule`` narrows the
    days when day-of-month is an ``L-n`` / ``LW`` form (its field is then ``*``)."""

    fields: tuple[str, ...]
    day_rule: LastDayRule | None = None


def nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (MON-FRI) nearest ``day`` without leaving the month: a Saturday moves to
    the Friday before (the Monday after when it is the 1st), a Sunday to the Monday after
    (the Friday before when it is the last day)."""
    last = calendar.monthrange(year, month)[1]
    weekday = calendar.weekday(year, month, day)  # 0 = Monday
    if weekday == 5:
        return day - 1 if day > 1 else day + 2
    if weekday == 6:
        return day + 1 if day < last else day - 2
    return day


def translate_quartz(fields: list[str]) -> QuartzFields:
    """Translate the 6 or 7 fields of a Quartz expression (upper or lower case).

    Raises ``ValueError`` whose message starts with the field's name (``day-of-week field
    '0' ...``) for what only Quartz defines; croniter checks the rest (ranges of the
    other fields) when :mod:`schemas.cron` hands the translation over.
    """
    upper = [field.upper() for field in fields]
    _check_question_marks(upper)
    dom, rule = _day_of_month(upper[_DOM])
    out = [*upper]
    out[_DOM], out[_DOW] = dom, _day_of_week(upper[_DOW])
    return QuartzFields(tuple(out), rule)


def _problem(index: int, field: str, why: str) -> ValueError:
    return ValueError(f"{QUARTZ_FIELDS[index]} field {field!r} {why}")


def _check_question_marks(fields: list[str]) -> None:
    for i, field in enumerate(fields):
        if "?" in field and (field != "?" or i not in (_DOM, _DOW)):
            why = "is not acceptable: '?' stands alone, in day-of-month or day-of-week only"
            raise _problem(i, field, why)
    if fields[_DOM] == "?" and fields[_DOW] == "?":
        raise ValueError("day-of-month and day-of-week are both '?': Quartz needs a value in one")
    if "?" not in (fields[_DOM], fields[_DOW]):
        raise ValueError(
            "Quartz needs '?' in day-of-month or day-of-week (e.g. '0 0 12 ? * MON-FRI', "
            f"'0 0 12 1 * ?'), got {fields[_DOM]!r} and {fields[_DOW]!r}"
        )


def _day_of_month(field: str) -> tuple[str, LastDayRule | None]:
    if field == "?":
        return "*", None
    last = _LAST_DAY.fullmatch(field)
    if last is None:
        if "L" in field:
            raise _problem(_DOM, field, "is not acceptable: L, L-n, LW and L-nW stand alone")
        return field, None
    offset = int(last["offset"] or 0)
    if offset > _MAX_LAST_DAY_OFFSET:
        raise _problem(_DOM, field, f"is not acceptable: L-n needs n <= {_MAX_LAST_DAY_OFFSET}")
    if offset == 0 and not last["weekday"]:
        return "L", None  # croniter's own
    return "*", LastDayRule(offset, bool(last["weekday"]))


def _day_of_week(field: str) -> str:
    if field == "?":
        return "*"
    items = field.split(",")
    if len(items) > 1 and any("L" in item or "#" in item for item in items):
        raise _problem(_DOW, field, "is not acceptable: 'L' and '#' stand alone")
    return ",".join(_day_of_week_item(field, item) for item in items)


def _day_of_week_item(field: str, item: str) -> str:
    if item == "L":
        return "6"  # Quartz: L alone is 7, Saturday
    if last := _DOW_LAST.fullmatch(item):
        return f"L{_unix_day(field, last['day'])}"
    if nth := _DOW_NTH.fullmatch(item):
        if not 1 <= int(nth["nth"]) <= 5:
            raise _problem(_DOW, field, "is not acceptable: '#' takes 1 to 5")
        return f"{_unix_day(field, nth['day'])}#{nth['nth']}"
    plain = _DOW_ITEM.fullmatch(item)
    if plain is None or (plain["start"] == "*" and plain["end"]):
        raise _problem(_DOW, field, f"is not acceptable: {_DOW_ALLOWED}")
    start = "*" if plain["start"] == "*" else _unix_day(field, plain["start"])
    end = f"-{_unix_day(field, plain['end'])}" if plain["end"] else ""
    step = f"/{plain['step']}" if plain["step"] else ""
    return f"{start}{end}{step}"


_DOW_ALLOWED = "allowed 1-7 or SUN-SAT (Quartz: 1 = Sunday, 7 = Saturday), ?, L, nL, n#k"


def _unix_day(field: str, day: str) -> str:
    """A Quartz day (1..7 or a name) as croniter's number 0..6."""
    if day.isdigit():
        if not 1 <= int(day) <= 7:
            raise _problem(_DOW, field, f"is not acceptable: {_DOW_ALLOWED}")
        return str(int(day) - 1)
    if day not in _DAYS:
        raise _problem(_DOW, field, f"is not acceptable: {_DOW_ALLOWED}")
    return str(_DAYS.index(day))
