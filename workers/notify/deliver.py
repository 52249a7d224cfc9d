"""One HTTP POST of an event's body to a receiver, bounded in time (thin I/O, httpx).

:func:`post` never raises for what the receiver or the network does: it returns an
:class:`Answer` with the status (None: no answer), the start of the response body and a
one-line error. Each step (connect, send, each read) waits at most ``timeout_s``, and the
whole attempt about twice that (a receiver trickling its answer is cut off). Redirects are
not followed. The receiver's URL is never put in an error (it may hold a token): errors
name the receiver's host only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from schemas.settings_webhooks import redact_webhook_url

__all__ = ["BODY_KEPT_BYTES", "Answer", "post"]

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
