"""One HTTP POST of an event's body to a receiver, bounded in time (thin I/O, httpx).

:func:`post` never raises for what the receiver or the network does: it returns an
:class:`Answer` with the status (None: no answer), the start of the response body and a
one-line error. Each step (connect, send, each read) waits at most ``timeout_s``, and the
whole attempt about twice that (a receiver trickling its answer is cut off). Redirects are
not followed. The receiver's URL is never put in an error (it may hold a token): errors
name the receiver's host only.

:func:`try_once` is one attempt at delivering an event as both kinds of destination make
it (a configured receiver, :mod:`workers.notify.receiver`, and a job's own webhook,
:mod:`workers.notify.hooks`): the body, the headers, the POST, and what follows (delivered,
retried later, or given up: :mod:`workers.notify.schedule`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from schemas.messages import Event, FailedNotification
from schemas.settings_webhooks import redact_webhook_url
from workers.notify.payload import body_of, headers_for
from workers.notify.schedule import Failures, GiveUp, RetryPolicy, Verdict, after_failure, verdict

__all__ = ["BODY_KEPT_BYTES", "Answer", "Tried", "failed_entry", "post", "try_once"]

BODY_KEPT_BYTES = 2048  # of the receiver's answer, what is kept for the CLI and the failed list


@dataclass(frozen=True)
class Answer:
    """What one attempt got: ``status`` (None: no answer), the answer's first bytes as
    text, ``error`` (empty when delivered), the ``Retry-After`` asked for (ms), how long
    the attempt took (ms)."""

    status: int | None
    body: str
    error: str
    retry_after_ms: int | None
    elapsed_ms: int


def post(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], *, timeout_s: float
) -> Answer:
    """POST ``body`` to ``url`` with ``headers``; see the module docstring."""
    started = time.monotonic()
    deadline = started + 2 * timeout_s
    try:
        with client.stream(
            "POST",
            url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
        ) as response:
            kept = _read_some(response, deadline)
            status = response.status_code
            retry_after = _retry_after_ms(response.headers.get("Retry-After"))
    except httpx.HTTPError as exc:
        error = _describe(exc, url, timeout_s)
        return Answer(None, "", error, None, _ms_since(started))
    text = kept.decode("utf-8", errors="replace")
    error = (
        "" if 200 <= status < 300 else f"HTTP {status}" + (f": {_first_line(text)}" if text else "")
    )
    return Answer(status, text, error, retry_after, _ms_since(started))


@dataclass(frozen=True)
class Tried:
    """One attempt at an event: the ``body`` sent, the ``attempt`` number (from 1), the
    receiver's ``answer`` and what follows: ``state`` None (delivered), :class:`Failures`
    (tried again at its ``next_ms``) or :class:`GiveUp` (to the failed list)."""

    body: bytes
    attempt: int
    answer: Answer
    state: Failures | GiveUp | None


def try_once(
    client: httpx.Client,
    url: str,
    event: Event,
    *,
    cluster: str,
    secret: str | None,
    timeout_s: float,
    entry_id: str,
    failures: Failures | None,
    policy: RetryPolicy,
    clock: Callable[[], int],
) -> Tried:
    """POST ``event`` to ``url`` (attempt ``failures.attempts + 1``: ``failures`` are the
    failed attempts so far at the delivery ``entry_id``); ``clock`` gives the epoch ms
    the retry schedule counts from."""
    attempt = (failures.attempts if failures else 0) + 1
    body = body_of(event, cluster)
    headers = headers_for(event, body, secret=secret, attempt=attempt)
    answer = post(client, url, body, headers, timeout_s=timeout_s)
    judged = verdict(answer.status)
    if judged is Verdict.DELIVERED:
        return Tried(body, attempt, answer, None)
    state = after_failure(
        failures,
        entry_id=entry_id,
        now_ms=clock(),
        error=answer.error,
        status=answer.status,
        final=judged is Verdict.FINAL,
        policy=policy,
        retry_after_ms=answer.retry_after_ms,
    )
    return Tried(body, attempt, answer, state)


def failed_entry(
    receiver: str, event: Event, tried: Tried, given_up: GiveUp, failed_at_ms: int
) -> FailedNotification:
    """The failed list's entry of a delivery to ``receiver`` given up at ``failed_at_ms``."""
    return FailedNotification(
        receiver=receiver,
        event_id=event.id,
        event_type=event.kind,
        attempts=given_up.attempts,
        first_attempt_ms=given_up.first_ms,
        failed_at_ms=failed_at_ms,
        error=given_up.error,
        status=given_up.status,
        body=tried.body.decode("utf-8"),
    )


def _read_some(response: httpx.Response, deadline: float) -> bytes:
    """Up to BODY_KEPT_BYTES of the answer; stops at the deadline (``ReadTimeout``)."""
    kept = b""
    for chunk in response.iter_bytes():
        kept += chunk[: BODY_KEPT_BYTES - len(kept)]
        if len(kept) >= BODY_KEPT_BYTES:
            break
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the answer took too long")
    return kept


def _retry_after_ms(value: str | None) -> int | None:
    """``Retry-After`` in seconds or as an HTTP date, in ms from now (None: absent or bad)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text) * 1000
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0, round((when.timestamp() - time.time()) * 1000))


def _describe(exc: httpx.HTTPError, url: str, timeout_s: float) -> str:
    where = redact_webhook_url(url)
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {where} within {timeout_s:g} s ({type(exc).__name__})"
    reason = str(exc).replace(url, where) or type(exc).__name__
    return f"{type(exc).__name__} from {where}: {_first_line(reason)}"


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
