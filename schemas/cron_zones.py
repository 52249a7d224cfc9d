"""Local wall times of a schedule as real instants, across daylight-saving changes (pure).

A cron expression names local wall times (naive datetimes) in a zone. Most exist exactly
once; around a daylight-saving change some do not exist (spring forward: in Europe/Paris
02:00-02:59 on the last Sunday of March) and some exist twice (fall back: 02:00-02:59 on
the last Sunday of October, first in summer time, then in winter time). The rule:

* An expression whose hour field is every hour (``*``) fires at EVERY real instant whose
  local time matches: in a repeated hour it fires in both passes (they are an hour apart
  in real time), and wall times that do not exist are not fired (``*/15 * * * *`` fires at
  01:45 winter time, then 03:00 summer time: 15 real minutes apart). No double fire, no
  skipped real instant.
* Any other expression names local times of day, and each fires once: a wall time that
  exists twice fires at its first pass only; a wall time that does not exist fires at the
  instant the clock jumps (03:00 summer time in Paris), once, however many of its wall
  times the gap swallowed.

Times are epoch seconds; the step function walks naive wall times (first match strictly
after a given one) and raises when the expression never matches again.
"""

from __future__ import annotations

__all__ = ["WallStep", "next_instant_s"]

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

WallStep = Callable[[datetime], datetime]
"""``(naive wall time) -> the first matching naive wall time strictly after it``."""

_SECOND = timedelta(seconds=1)


def next_instant_s(step: WallStep, after_s: int, zone: ZoneInfo, *, every_hour: bool) -> int:
    """The first fire instant strictly after ``after_s`` (epoch s) of the wall times walked
    by ``step`` in ``zone``, by the rule of the module docstring (``every_hour``: the
    expression's hour field matches every hour). Raises what ``step`` raises."""
    here = datetime.fromtimestamp(after_s, zone)
    wall = here.replace(tzinfo=None)
    found = _scan(step, step(wall), after_s, zone, every_hour)
    if every_hour and here.fold == 0:
        first, second = _instants(wall, zone)
        if first < second:
            # ``after_s`` is in the first pass of a repeated hour: the second pass, which
            # comes later in real time, starts again at an earlier wall time.
            again = step(_wall(_transition_s(first, second, zone), zone) - _SECOND)
            again_first, again_second = _instants(again, zone)
            if again_first < again_second and after_s < again_second < found:
                found = again_second
    return found


def _scan(step: WallStep, wall: datetime, after_s: int, zone: ZoneInfo, every_hour: bool) -> int:
    """From the matching wall time ``wall`` on, the first fire instant after ``after_s``."""
    while True:
        first, second = _instants(wall, zone)
        if first == second:  # the usual case: one instant
            if first > after_s:
                return first
            wall = step(wall)
        elif first < second:  # exists twice: fall back
            if first > after_s:
                return first
            if every_hour:
                if second > after_s:
                    return second
                wall = step(wall)
            else:  # its first pass is past: skip the rest of the repeated wall times
                wall = step(_wall(_transition_s(first, second, zone) - 1, zone))
        else:  # does not exist: spring forward
            jump_s = _transition_s(second, first, zone)
            if not every_hour and jump_s > after_s:
                return jump_s
            wall = step(_wall(jump_s, zone) - _SECOND)  # on from the first wall time after it


def _instants(wall: datetime, zone: ZoneInfo) -> tuple[int, int]:
    """``wall``'s instants (epoch s) read with the offset before and after a change
    (``fold`` 0 and 1): equal when it exists once, ascending when it exists twice,
    descending when it falls in a gap."""
    return (
        int(wall.replace(tzinfo=zone, fold=0).timestamp()),
        int(wall.replace(tzinfo=zone, fold=1).timestamp()),
    )


def _transition_s(low_s: int, high_s: int, zone: ZoneInfo) -> int:
    """The first second in ``(low_s, high_s]`` at ``high_s``'s UTC offset: the instant the
    offset changed (one change in between; bisection, whole seconds)."""
    target = _offset(high_s, zone)
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if _offset(middle, zone) == target:
            high_s = middle
        else:
            low_s = middle
    return high_s


def _offset(instant_s: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(instant_s, zone).utcoffset()


def _wall(instant_s: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(instant_s, zone).replace(tzinfo=None)
