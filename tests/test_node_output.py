"""The bounded output collector (pure): everything when it fits, else head + marker + tail,
whatever the chunks, in bounded memory."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.node.output import OutputCollector, dropped_marker


def collect(max_bytes: int, *chunks: bytes) -> OutputCollector:
    collector = OutputCollector(max_bytes)
    for chunk in chunks:
        collector.feed(chunk)
    return collector


@pytest.mark.parametrize(
    ("max_bytes", "chunks", "text", "dropped"),
    [
        (10, [b""], "", 0),
        (10, [b"abc"], "abc", 0),
        (10, [b"0123456789"], "0123456789", 0),  # exactly max_bytes: nothing dropped
        (10, [b"0123456789X"], "01234" + dropped_marker(1) + "6789X", 1),
        (10, [b"a" * 5, b"b" * 20, b"c" * 5], "aaaaa" + dropped_marker(20) + "ccccc", 20),
        (11, [b"x" * 30], "xxxxx" + dropped_marker(19) + "xxxxxx", 19),  # odd: tail gets more
        (0, [b"abc"], dropped_marker(3), 3),
        # a character cut by the head's end or the tail's start is left out, not mangled
        (6, ["aaé".encode(), b"b" * 9, "éyz".encode()], "aa" + dropped_marker(11) + "yz", 11),
        # bytes that are not UTF-8 at all become U+FFFD
        (10, [b"ok \xff\xfe"], "ok \ufffd\ufffd", 0),
    ],
)
def test_collects_head_and_tail(
    max_bytes: int, chunks: list[bytes], text: str, dropped: int
) -> None:
    collector = collect(max_bytes, *chunks)
    assert collector.text() == text
    assert collector.dropped_bytes == dropped
    assert collector.total_bytes == sum(map(len, chunks))


@settings(max_examples=200, database=None)
@given(
    data=st.binary(max_size=300).map(lambda b: bytes(c % 95 + 32 for c in b)),  # printable ASCII
    max_bytes=st.integers(min_value=0, max_value=64),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
)
def test_the_chunking_does_not_matter(data: bytes, max_bytes: int, cuts: list[int]) -> None:
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    head, tail = max_bytes // 2, max_bytes - max_bytes // 2
    if len(data) <= max_bytes:
        expected = data.decode()
    else:
        kept_tail = data[len(data) - tail :]
        expected = data[:head].decode() + dropped_marker(len(data) - max_bytes) + kept_tail.decode()
    assert collect(max_bytes, *chunks).text() == expected


def test_memory_stays_bounded_however_long_the_output() -> None:
    collector = OutputCollector(1024)
    most = 0
    for _ in range(2000):  # 128 MB in 64 KiB chunks
        collector.feed(b"z" * 65536)
        most = max(most, collector.held_bytes)
    assert most <= 1024 + 512 + 1
    assert collector.dropped_bytes == 2000 * 65536 - 1024
    assert collector.text().endswith("z" * 512) and len(collector.text()) < 1200


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        OutputCollector(-1)
