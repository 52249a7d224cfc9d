"""The one codec of stream messages: msgpack maps with a type tag ``t`` and a version ``v``.

``decode`` never raises anything but :class:`DecodeError`, which keeps the raw bytes so the
caller can put them on the dead-letter stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

import msgpack
from pydantic import TypeAdapter, ValidationError

from schemas.errors import DecodeError
from schemas.messages import MESSAGE_TYPES, Message

__all__ = ["decode", "decode_as", "decode_many", "encode"]

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
    cls, body = _unpack(raw)
    return _validate(cls, body, raw)


def decode_many(raws: Sequence[bytes]) -> list[Message | DecodeError]:
    """Decode each of ``raws``, as :func:`decode` would, returning the DecodeError in place
    of a bad one instead of raising it.

    Faster than one :func:`decode` per message: the messages of one type are validated
    together, in one call into pydantic; only when that batch has a bad message are they
    validated one by one, to tell which.
    """
    out: list[Message | DecodeError | None] = [None] * len(raws)
    by_type: dict[type[Message], list[tuple[int, dict[str, Any]]]] = {}
    for i, raw in enumerate(raws):
        try:
            cls, body = _unpack(raw)
        except DecodeError as exc:
            out[i] = exc
            continue
        by_type.setdefault(cls, []).append((i, body))
    for cls, items in by_type.items():
        try:
            models = _list_of(cls).validate_python([body for _, body in items])
        except ValidationError:  # tell which: one by one
            for i, body in items:
                try:
                    out[i] = _validate(cls, body, raws[i])
                except DecodeError as exc:
                    out[i] = exc
            continue
        for (i, _), model in zip(items, models, strict=True):
            out[i] = model
    return [o for o in out if o is not None]


@cache
def _list_of(cls: type[Message]) -> TypeAdapter[list[Message]]:
    return TypeAdapter(list[cls])  # type: ignore[valid-type]


def _unpack(raw: bytes) -> tuple[type[Message], dict[str, Any]]:
    """The message class named by the tag, and the fields (tag removed), not validated."""
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
    return cls, body


def _validate(cls: type[M], body: dict[str, Any], raw: bytes) -> M:
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
