"""Signed heartbeats: HMAC-SHA256 of the encoded message, with a secret the members and
the liveness workers share (``qwcontrol.clusterMode.heartbeat.secret``).

A signed entry carries, beside the message field ``m``, the field ``s``
(:data:`schemas.keys.SIGNATURE_FIELD`): the hex digest of ``HMAC-SHA256(secret, m)``.
Whoever may write the heartbeats stream but does not know the secret can neither forge a
heartbeat nor alter one; re-adding a captured one is the liveness worker's replay check's
business (:mod:`workers.liveness.trust`). Signatures are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from schemas.keys import MESSAGE_FIELD, SIGNATURE_FIELD

__all__ = ["sign", "signature_problem"]


def sign(secret: bytes, payload: bytes) -> bytes:
    """The signature of ``payload`` (an encoded message): hex HMAC-SHA256, 64 ASCII bytes."""
    return hmac.new(secret, payload, hashlib.sha256).hexdigest().encode()


def signature_problem(secret: bytes, fields: Mapping[bytes, bytes]) -> str | None:
    """None when ``fields`` (a stream entry) carry a valid signature of their message field;
    else why not, for the dead-letter reason (never the secret or the expected value)."""
    given = fields.get(SIGNATURE_FIELD)
    if given is None:
        return "unsigned heartbeat: heartbeat.secret is set and the entry has no 's' field"
    if not hmac.compare_digest(given, sign(secret, fields.get(MESSAGE_FIELD, b""))):
        return (
            "heartbeat signature does not match: signed with another heartbeat.secret, "
            "or forged or altered"
        )
    return None
