"""The one codec of stream messages: msgpack maps with a type tag ``t`` and a version ``v``.

``decode`` never raises anything but :class:`DecodeError`, which keeps the raw bytes so the
caller can put them on the dead-letter stream.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack
from pydantic import ValidationError

from schemas.errors import DecodeError
from schemas.messages import MESSAGE_TYPES, Message

__all__ = ["decode", "decode_as", "encode"]

M = TypeVar("M", bound=Message)


def encode(message: Message) -> bytes:
    """Encode a message as a msgpack map ``{"t": type, "v": version, ...fields}``."""
    body: dict[str, Any] = message.model_dump(mode="json")
    body["t"] = message.TYPE
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode(raw: bytes) -> Message:
    """Decode bytes into the message type named by their ``t`` tag.

    Raises DecodeError (with ``raw``) for bytes that are not msgpack, not a map, of an unknown
    type, of an unsupported schema version, or whose fields do not validate.
    """
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"not msgpack: {type(exc).__name__}: {exc}", raw) from None
    if not isinstance(body, dict):
        raise DecodeError(f"not a map: {type(body).__name__}", raw)
    kind = body.pop("t", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError(f"unknown message type {kind!r}", raw)
    version = body.get("v")
    if version != cls.VERSION:
        raise DecodeError(f"unsupported {cls.TYPE} schema version {version!r}", raw)
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise DecodeError(f"invalid {cls.TYPE}: {problems}", raw) from None


def decode_as(raw: bytes, expected: type[M]) -> M:
    """Decode and check the type; a message of another type is a DecodeError."""
    message = decode(raw)
    if not isinstance(message, expected):
        raise DecodeError(f"expected {expected.TYPE}, got {message.TYPE}", raw)
    return message
