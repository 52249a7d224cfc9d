"""The liveness worker's heartbeat decoder validates a member's repeated content once, and
still says of every entry what the codec says: the same heartbeats, the same content and
``seq``, the same refusals with the same reasons (pure, no Redis)."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import msgpack
import pytest

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD
from schemas.messages import Heartbeat
from workers.bus.streams import Entry, decode_entries
from workers.liveness.beats import HeartbeatDecoder
from workers.liveness.info import info_content

MEMBER = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
BASE = Heartbeat(
    uuid=MEMBER, name="a", seq=3, started_at_ms=7, sent_at_ms=9, tags=("x",), running=("e1",)
)
_ABSENT = object()

# field -> values put in place of BASE's: a heartbeat of the same content but for them
MUTATIONS: dict[str, list[Any]] = {
    "seq": [0, 2**64 - 1, -1, "5", 5.0, True, None, [1], _ABSENT],
    "sent_at_ms": [0, -3, "9", 9.5, False, None, _ABSENT],
    "v": [True, 1.0, 2, "1", _ABSENT],
    "t": ["membership", "nope", _ABSENT],
    "uuid": [MEMBER.upper(), "not-a-uuid", 5],
    "name": ["", "b", 5],
    "tags": [[], [1], "x", [["x"]], {"x": 1}],
    "running": [["e1", "e2"], [None]],
    "passive": [0, 1, "yes"],
    "started_at_ms": [7.0, True, -7],
    "x": [1],  # an unknown field
}


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = BASE.model_dump(mode="json")
    b["t"] = Heartbeat.TYPE
    for name, value in changes.items():
        if value is _ABSENT:
            b.pop(name, None)
        else:
            b[name] = value
    return b


def entry(n: int, raw: bytes) -> Entry:
    return (f"1700000000{n:03d}-0".encode(), {MESSAGE_FIELD: raw})


def corpus() -> list[bytes]:
    raws = [encode(BASE)]
    for name, values in MUTATIONS.items():
        raws += [msgpack.packb(body(**{name: v}), use_bin_type=True) for v in values]
    raws += [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({1: 2}), b""]
    return raws


def verdicts_of_codec(entries: list[Entry]) -> list[tuple[Any, ...]]:
    out = []
    for d in decode_entries(entries):
        if isinstance(d.message, Heartbeat):
            out.append((d.entry_id, "heartbeat", info_content(d.message), d.message.seq))
        else:
            out.append((d.entry_id, "refused", d.error or type(d.message).__name__))
    return out


def verdicts_of_decoder(decoder: HeartbeatDecoder, entries: list[Entry]) -> list[tuple[Any, ...]]:
    beats, others = decoder.decode(entries)
    out = [(e, "heartbeat", info_content(hb), seq) for e, hb, seq, _ in beats]
    out += [(d.entry_id, "refused", d.error or type(d.message).__name__) for d in others]
    return sorted(out, key=lambda v: v[0])


def test_an_entry_like_a_remembered_one_gets_the_codecs_verdict() -> None:
    """Each entry right after the decoder learnt BASE's content: those that differ from it
    only in ``seq`` or ``sent_at_ms`` meet the remembered content."""
    for n, raw in enumerate(corpus()):
        decoder = HeartbeatDecoder()
        decoder.decode([entry(999, encode(BASE))])
        one = [entry(n, raw)]
        assert verdicts_of_decoder(decoder, one) == verdicts_of_codec(one), msgpack.unpackb(raw)


@pytest.mark.parametrize("first", ["base first", "mutation first"])
def test_the_decoder_says_what_the_codec_says_of_every_entry(first: str) -> None:
    raws = corpus()
    if first == "mutation first":
        raws = raws[1:] + raws[:1]
    entries = [entry(n, raw) for n, raw in enumerate(raws)]
    decoder = HeartbeatDecoder()
    expected = verdicts_of_codec(entries)
    assert verdicts_of_decoder(decoder, entries) == expected  # learning
    assert verdicts_of_decoder(decoder, entries) == expected  # from what it learnt
    assert sum(v[1] == "heartbeat" for v in expected) >= 10
    assert sum(v[1] == "refused" for v in expected) >= 20


def test_a_repeat_is_not_validated_again_and_gets_its_own_seq() -> None:
    decoder = HeartbeatDecoder()
    decoder.decode([entry(0, encode(BASE))])
    repeats = [BASE.model_copy(update={"seq": s, "sent_at_ms": 100 + s}) for s in range(4, 8)]
    beats, others = decoder.decode([entry(n, encode(hb)) for n, hb in enumerate(repeats)])
    assert others == []
    assert [seq for _, _, seq, _ in beats] == [4, 5, 6, 7]
    assert {id(hb) for _, hb, _, _ in beats} == {id(beats[0][1])}  # one validated content


def test_each_member_keeps_one_remembered_content() -> None:
    decoder = HeartbeatDecoder()
    for n in range(3):
        hb = BASE.model_copy(update={"running": (f"e{n}",)})
        decoder.decode([entry(n, encode(hb))])
    other = str(uuidlib.uuid4())
    decoder.decode([entry(9, encode(BASE.model_copy(update={"uuid": other})))])
    assert len(decoder._memo) == 2  # the last content of each of the two members
