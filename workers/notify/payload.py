"""What a receiver gets (pure): the JSON body of an event, its headers and its signature.

The body is the same bytes at every attempt (keys sorted, no spaces, UTF-8)::

    {"cluster": "qwc", "data": {...}, "id": "member.dead:<uuid>:<ms>",
     "schema": "qwc.event/1", "time": "2024-05-01T12:00:00.000+00:00",
     "time_ms": 1714564800000, "type": "member.dead"}

Headers: ``Content-Type: application/json``, ``User-Agent: qwc-notify/<version>``,
``X-QWC-Event`` (the type), ``X-QWC-Event-Id`` and ``Idempotency-Key`` (the event id:
dedupe on it), ``X-QWC-Attempt`` (1 for the first attempt at this receiver, counting
retries) and, when ``qwcontrol.notifications.secret`` is set, ``X-QWC-Signature:
sha256=<hex>``: the HMAC-SHA256 of the raw body under the secret. The signed body holds
the event's time and id, so a receiver rejects a replay by the id it has seen (or by a
``time`` older than it accepts).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from schemas import __version__
from schemas.messages import Event

__all__ = [
    "SCHEMA",
    "SIGNATURE_HEADER",
    "body_of",
    "headers_for",
    "sign",
    "verify",
]

SCHEMA = "qwc.event/1"
SIGNATURE_HEADER = "X-QWC-Signature"
_PREFIX = "sha256="


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def body_of(event: Event, cluster: str) -> bytes:
    """The JSON body of ``event`` for the cluster named ``cluster`` (its Redis prefix)."""
    document = {
        "schema": SCHEMA,
        "id": event.id,
        "type": event.kind,
        "time": _iso(event.at_ms),
        "time_ms": event.at_ms,
        "cluster": cluster,
        "data": event.data,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` under ``secret`` (UTF-8)."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (the header's value) is :func:`sign` of ``body``, compared in
    constant time. What a receiver does (docs/notifications.md has it in a few lines)."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


def headers_for(event: Event, body: bytes, *, secret: str | None, attempt: int) -> dict[str, str]:
    """The request headers of one attempt (``attempt`` from 1) at delivering ``body``."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"qwc-notify/{__version__}",
        "X-QWC-Event": event.kind,
        "X-QWC-Event-Id": event.id,
        "Idempotency-Key": event.id,
        "X-QWC-Attempt": str(attempt),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return headers
