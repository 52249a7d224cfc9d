"""IANA time zone names (``Europe/Paris``, ``America/New_York``, ``UTC``): validated once.

The zone database is the system's (``/usr/share/zoneinfo``) and, where the system has none
(slim container images, Windows), the ``tzdata`` package this project depends on:
:mod:`zoneinfo` falls back to it by itself.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TIME_ZONE", "time_zone", "validate_time_zone"]

import difflib
import zoneinfo
from functools import lru_cache

from schemas.errors import ScheduleError

DEFAULT_TIME_ZONE = "UTC"


@lru_cache(maxsize=256)
def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone named ``name`` (an IANA name, case as in the database).

    Raises :class:`ScheduleError` naming the zone, with a "did you mean" when a known name
    is close (``europe/paris`` -> ``Europe/Paris``).
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name!r}{_suggestion(name)}") from None


def validate_time_zone(name: str) -> str:
    """``name`` stripped, when it names a time zone; raises :class:`ScheduleError`."""
    name = name.strip()
    time_zone(name)
    return name


def _suggestion(name: str) -> str:
    known = zoneinfo.available_timezones()
    by_case = {key.lower(): key for key in known}
    close = by_case.get(name.strip().lower())
    if close is None:
        matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        close = matches[0] if matches else None
    if close:
        return f": did you mean {close!r}?"
    return ": expected an IANA name such as Europe/Paris, America/New_York or UTC"
