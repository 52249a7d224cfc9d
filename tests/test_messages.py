"""Every message type round-trips through the one codec; bad bytes raise DecodeError with raw."""

from __future__ import annotations

import msgpack
import pytest
from pydantic import ValidationError

from schemas.codec import decode, decode_as, decode_many, encode
from schemas.errors import DecodeError
from schemas.messages import (
    MESSAGE_TYPES,
    CommandAction,
    Event,
    FailedNotification,
    Heartbeat,
    MembershipChange,
    MemberState,
    Message,
    RecoveryProposal,
    RemoteCommand,
    TakeoverProposal,
    ViewRestart,
)

U1 = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
U2 = "0b7f7c86-2b8d-4d4b-9d0a-7e6f3a8f9c11"

SAMPLES: list[Message] = [
    Heartbeat(
        uuid=U1,
        name="node-1",
        seq=7,
        started_at_ms=1,
        sent_at_ms=2,
        tags=("a", "b"),
        running=("e1",),
        passive=True,
        version="1.0",
    ),
    MembershipChange(
        uuid=U1,
        name="n",
        from_state=None,
        to_state=MemberState.ACTIVE,
        at_ms=5,
        last_seen_ms=4,
        reason="heartbeat",
    ),
    MembershipChange(
        uuid=U1, from_state=MemberState.INACTIVE, to_state=MemberState.DEAD, at_ms=5, last_seen_ms=4
    ),
    TakeoverProposal(
        id="p1", dead_uuid=U1, policy="any", proposed_at_ms=1, due_at_ms=2, last_seen_ms=0
    ),
    RecoveryProposal(
        id="r1", dead_uuid=U2, policy="static", proposed_at_ms=1, due_at_ms=2, last_seen_ms=0
    ),
    RemoteCommand(
        id="c1",
        action=CommandAction.ABORT,
        target_uuid=U2,
        execution_id="e9",
        issued_at_ms=1,
        expires_at_ms=2,
    ),
    ViewRestart(run_id="9f1c" * 10),
    Event(
        id=f"member.dead:{U1}:5",
        kind="member.dead",
        at_ms=5,
        data={"member": {"uuid": U1, "name": "n"}, "nested": [1, 2.5, None, True, "x"]},
    ),
    Event(id="execution.failed:e1", kind="execution.failed", at_ms=6, hook_urls=("http://h/",)),
    FailedNotification(
        receiver="ops",
        event_id="takeover.committed:p1",
        event_type="takeover.committed",
        attempts=7,
        first_attempt_ms=1,
        failed_at_ms=9,
        error="HTTP 503",
        status=503,
        body='{"schema":"qwc.event/1"}',
    ),
]


def test_every_message_type_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    raw = encode(message)
    assert decode(raw) == message
    assert decode_as(raw, type(message)) == message
    assert encode(decode(raw)) == raw


def test_messages_are_frozen() -> None:
    with pytest.raises(ValidationError):
        SAMPLES[0].name = "other"  # type: ignore[misc]


def test_uuids_are_canonicalised() -> None:
    hb = Heartbeat(uuid=U1.upper(), name="x", seq=0, started_at_ms=0, sent_at_ms=0)
    assert hb.uuid == U1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"t": "nope", "v": 1}), "unknown message type"),
        (msgpack.packb({"v": 1}), "unknown message type"),
        (msgpack.packb({"t": "heartbeat", "v": 2, "uuid": U1}), "unsupported heartbeat schema"),
        (msgpack.packb({"t": "heartbeat", "v": 1, "uuid": "x"}), "invalid heartbeat"),
        (
            msgpack.packb(
                {
                    "t": "heartbeat",
                    "v": 1,
                    "uuid": U1,
                    "name": "n",
                    "seq": -1,
                    "started_at_ms": 0,
                    "sent_at_ms": 0,
                }
            ),
            "invalid heartbeat",
        ),
        (
            msgpack.packb(
                {
                    "t": "heartbeat",
                    "v": 1,
                    "uuid": U1,
                    "name": "n",
                    "seq": 1,
                    "started_at_ms": 0,
                    "sent_at_ms": 0,
                    "extra": 1,
                }
            ),
            "invalid heartbeat",
        ),
    ],
)
def test_bad_bytes_raise_decode_error_keeping_raw(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw)
    assert info.value.raw == raw
    assert reason in info.value.reason
    (batched,) = decode_many([raw])
    assert isinstance(batched, DecodeError)
    assert (batched.raw, batched.reason) == (raw, info.value.reason)


def test_decode_many_gives_what_decode_gives_each() -> None:
    good = [encode(m) for m in SAMPLES] * 3
    bad_uuid = msgpack.packb({"t": "heartbeat", "v": 1, "uuid": "x"})
    raws = [good[0], b"\xc1", *good[1:5], bad_uuid, *good[5:]]
    results = decode_many(raws)
    assert len(results) == len(raws)
    for raw, result in zip(raws, results, strict=True):
        try:
            expected: object = decode(raw)
        except DecodeError as exc:
            assert isinstance(result, DecodeError) and result.reason == exc.reason
            assert result.raw == raw
        else:
            assert result == expected


def test_decode_as_rejects_another_type() -> None:
    raw = encode(SAMPLES[3])
    with pytest.raises(DecodeError, match="expected heartbeat"):
        decode_as(raw, Heartbeat)
