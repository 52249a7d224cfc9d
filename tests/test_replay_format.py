"""The recording file: what is written is read back; anything else is a RecordingError
that says what is wrong, never a traceback (also through ``qwc replay``)."""

from __future__ import annotations

import zlib
from pathlib import Path

import msgpack
import pytest
from click.testing import CliRunner

from schemas.errors import QwcError, RecordingError
from workers.cli.main import cli
from workers.replay.fileformat import FORMAT_VERSION, MAGIC, RecordingWriter, read_recording
from workers.replay.records import JobRecord, RecordingHeader, Snapshot

HEADER = RecordingHeader(
    created_ms=2_000,
    source="synthetic",
    prefix="qwc",
    since_ms=1_000,
    until_ms=2_000,
    start_ms=500,
    view_started_ms=400,
    released_ms=0,
    settings={"qwcontrol.clusterMode.heartbeat.interval": "0.2"},
)
SNAPSHOT = Snapshot(
    jobs=[JobRecord(id="j1", owner_uuid="a", modified_by="a", modified_ms=1, created_ms=1)],
    owners={"a": 1},
)


def write(path: Path, *, compression: str = "zlib", heartbeat_blocks: int = 2) -> Path:
    with RecordingWriter(path, compression=compression) as w:
        w.header(HEADER)
        w.snapshot(SNAPSHOT)
        w.block("membership", [600, 700], [0, 0], [b"m1", b"m2"])
        w.block("commands:x", [650], [3], [b"c1"])
        for i in range(heartbeat_blocks):
            w.block("heartbeats", [1000 + 10 * i, 1000 + 10 * i], [0, 1], [b"h%d" % i, b"h"])
    return path


@pytest.mark.parametrize("compression", ["zlib", "lzma"])
def test_what_is_written_is_read_back(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path / "r.qwcrec", compression=compression)
    assert path.read_bytes()[:8] == MAGIC and path.read_bytes()[8:10] == b"\x00\x01"
    assert not (tmp_path / "r.qwcrec.part").exists()
    with read_recording(path) as rec:
        assert rec.header == HEADER and rec.snapshot == SNAPSHOT
        assert sorted(rec.streams) == ["commands:x", "membership"]
        (m,) = rec.streams["membership"]
        assert (m.ms, m.seq, m.raw) == ([600, 700], [0, 0], [b"m1", b"m2"])
        blocks = list(rec.heartbeat_blocks())
    assert [b.raw for b in blocks] == [[b"h0", b"h"], [b"h1", b"h"]]
    assert [b.seq for b in blocks] == [[0, 1], [0, 1]]


def test_a_recording_without_heartbeats_is_complete(tmp_path: Path) -> None:
    path = write(tmp_path / "r.qwcrec", heartbeat_blocks=0)
    with read_recording(path) as rec:
        assert list(rec.heartbeat_blocks()) == []
        assert len(rec.streams["membership"][0]) == 2


def test_an_exception_while_writing_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "r.qwcrec"
    with (
        pytest.raises(ValueError, match="the heartbeats' blocks come last"),
        RecordingWriter(path) as w,
    ):
        w.header(HEADER)
        w.snapshot(SNAPSHOT)
        w.block("heartbeats", [1], [0], [b"h"])
        w.block("membership", [2], [0], [b"m"])
    assert list(tmp_path.iterdir()) == []


def read_all(path: Path) -> None:
    with read_recording(path) as rec:
        list(rec.heartbeat_blocks())


def body(*records: dict[str, object], version: int = FORMAT_VERSION) -> bytes:
    packed = b"".join(msgpack.packb(r, use_bin_type=True) for r in records)
    return MAGIC + version.to_bytes(2, "big") + b"\x01" + zlib.compress(packed)


GOOD_HEADER = {"k": "header", **HEADER.model_dump(mode="json")}
GOOD_SNAPSHOT = {"k": "snapshot", **SNAPSHOT.model_dump(mode="json")}


def hb_block(ms: list[int]) -> dict[str, object]:
    return {
        "k": "block",
        "stream": "heartbeats",
        "ms": ms,
        "seq": [0] * len(ms),
        "raw": [b"x"] * len(ms),
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a qwc recording"),
        (b"PK\x03\x04 a zip file", "not a qwc recording"),
        (MAGIC + b"\x00", "truncated recording: the header is cut short"),
        (body(GOOD_HEADER, version=2), r"format version 2 is newer than this qwc reads \(1\)"),
        (MAGIC + b"\x00\x01\x07" + b"x", "corrupt recording: unknown compression 7"),
        (MAGIC + b"\x00\x01\x01" + b"not zlib at all", "corrupt recording: compressed data"),
        (body(), "truncated recording: no header record"),
        (body(GOOD_SNAPSHOT), "corrupt recording: expected the header record"),
        (body({**GOOD_HEADER, "since_ms": "soon"}), "corrupt recording: header record: since_ms"),
        (body(GOOD_HEADER, GOOD_SNAPSHOT), "truncated recording: no end record"),
        (
            body(GOOD_HEADER, GOOD_SNAPSHOT, hb_block([2, 1]), {"k": "end", "entries": {}}),
            "heartbeats entries out of id order",
        ),
        (body(GOOD_HEADER, GOOD_SNAPSHOT, hb_block([5]), hb_block([4])), "out of id order"),
        (
            body(GOOD_HEADER, GOOD_SNAPSHOT, {"k": "block", "stream": "heartbeats", "ms": [1]}),
            "a block record is malformed",
        ),
        (
            body(GOOD_HEADER, GOOD_SNAPSHOT, hb_block([1]), {"k": "end", "entries": {"x": 9}}),
            "the end record counts",
        ),
        (body(GOOD_HEADER, GOOD_SNAPSHOT, [1, 2]), "a record is a list, not a map"),  # type: ignore[arg-type]
    ],
)
def test_what_is_not_a_complete_recording_is_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.qwcrec"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message) as err:
        read_all(path)
    assert str(path) in str(err.value) and isinstance(err.value, QwcError)


def test_every_cut_of_a_good_file_is_truncated_or_corrupt(tmp_path: Path) -> None:
    data = write(tmp_path / "good.qwcrec").read_bytes()
    cut = tmp_path / "cut.qwcrec"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(RecordingError, match=r"truncated|not a qwc recording|corrupt"):
            read_all(cut)


def test_flipped_bytes_and_trailing_garbage_are_caught(tmp_path: Path) -> None:
    data = write(tmp_path / "good.qwcrec").read_bytes()
    bad = tmp_path / "bad.qwcrec"
    bad.write_bytes(data + b"garbage")
    with pytest.raises(RecordingError, match="corrupt recording: data after the end"):
        read_all(bad)
    for i in range(11, len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        with pytest.raises(RecordingError):
            read_all(bad)


def test_a_missing_file_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read"):
        read_all(tmp_path / "nothing.qwcrec")


@pytest.mark.parametrize(
    "content", [b"", b"\x89QWCREC\n\x00\x09\x01", b"\x89QWCREC\n\x00\x01\x01xx"]
)
def test_qwc_replay_of_a_bad_file_exits_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.qwcrec"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["replay", str(path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"qwc: {path}: ") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
