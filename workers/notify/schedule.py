"""When to try a delivery again, and when to give up (pure).

An answer is **delivered** (2xx), worth a **retry** (no answer: connection refused, reset,
timed out; or 408, 429, 5xx) or **final** (any other status: 3xx — redirects are not
followed —, 4xx). After the n-th failed attempt at an event (n from 1) the next comes
``min(initial * 2 ** (n - 1), max)`` later, or the receiver's ``Retry-After`` when it asks
for longer (at most ``max``), and never later than ``horizon`` after the first attempt: the
last attempt is made at the horizon. A failure at or past the horizon, or a final answer,
gives up: the event goes to the failed list. With the defaults (1 s, 300 s, 3600 s) the
attempts are at 0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 811, … s, and at 3600 s.

The state of a receiver's retries lives in Redis (:class:`Failures`, one per receiver, of
its oldest undelivered event), so a restarted worker, or another replica, goes on with
the same schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.settings import Settings

__all__ = [
    "Failures",
    "GiveUp",
    "RetryPolicy",
    "Verdict",
    "after_failure",
    "attempt_offsets_ms",
    "policy_of",
    "retry_delay_ms",
    "verdict",
]


class Verdict(Enum):
    """What an answer means for a delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FINAL = "final"


def verdict(status: int | None) -> Verdict:
    """The verdict on an HTTP ``status`` (None: no answer at all)."""
    if status is None or status in (408, 429) or status >= 500:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    return Verdict.FINAL


@dataclass(frozen=True)
class RetryPolicy:
    """The retry schedule's bounds, ms: first pause, longest pause, time to keep trying."""

    initial_ms: int
    max_ms: int
    horizon_ms: int


def policy_of(settings: Settings) -> RetryPolicy:
    """The schedule ``qwcontrol.notifications.retry.*`` sets."""
    return RetryPolicy(
        initial_ms=round(settings.notification_retry_initial_s * 1000),
        max_ms=round(settings.notification_retry_max_s * 1000),
        horizon_ms=round(settings.notification_retry_horizon_s * 1000),
    )


def retry_delay_ms(failures: int, policy: RetryPolicy) -> int:
    """The pause after the ``failures``-th failed attempt (from 1), before the horizon cut."""
    exponent = min(max(failures - 1, 0), 62)  # no huge ints: the cap is reached long before
    return int(min(policy.initial_ms * 2**exponent, policy.max_ms))


@dataclass(frozen=True)
class Failures:
    """The failed attempts at one event (stream ``entry_id``): how many, since
    ``first_ms``, the next at ``next_ms`` (epoch ms), the last ``error`` and ``status``."""

    entry_id: str
    attempts: int
    first_ms: int
    next_ms: int
    error: str
    status: int | None


@dataclass(frozen=True)
class GiveUp:
    """The delivery of the event is given up after ``attempts`` (it goes to the failed list)."""

    attempts: int
    first_ms: int
    error: str
    status: int | None


def after_failure(
    before: Failures | None,
    *,
    entry_id: str,
    now_ms: int,
    error: str,
    status: int | None,
    final: bool,
    policy: RetryPolicy,
    retry_after_ms: int | None = None,
) -> Failures | GiveUp:
    """The state after an attempt at ``entry_id`` failed at ``now_ms`` (``before``: the
    state so far, ignored when it is about another entry): retry at ``next_ms``, or give up."""
    same = before is not None and before.entry_id == entry_id
    attempts = before.attempts + 1 if same and before else 1
    first_ms = before.first_ms if same and before else now_ms
    if final or now_ms - first_ms >= policy.horizon_ms:
        return GiveUp(attempts, first_ms, error, status)
    pause = max(retry_delay_ms(attempts, policy), min(retry_after_ms or 0, policy.max_ms))
    next_ms = min(now_ms + pause, first_ms + policy.horizon_ms)
    return Failures(entry_id, attempts, first_ms, next_ms, error, status)


def attempt_offsets_ms(policy: RetryPolicy) -> list[int]:
    """When each attempt is made, ms after the first, if every one fails without asking for
    a longer pause (the schedule documented above)."""
    offsets, state, now = [0], None, 0
    while True:
        state_or_end = after_failure(
            state, entry_id="e", now_ms=now, error="", status=None, final=False, policy=policy
        )
        if isinstance(state_or_end, GiveUp):
            return offsets
        state, now = state_or_end, state_or_end.next_ms
        offsets.append(now)
