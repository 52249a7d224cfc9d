"""The recording file of ``qwc record`` and ``qwc replay``, format version 1.

::

    bytes 0-7   magic  b"\\x89QWCREC\\n"
    bytes 8-9   format version, unsigned big-endian (1)
    byte  10    compression of the body: 1 zlib, 2 lzma (xz)
    body        compressed msgpack maps, one after the other, each with a kind "k":
                "header"    first: a RecordingHeader
                "snapshot"  second: a Snapshot
                "block"     entries of one stream: "stream", and the lists "ms", "seq",
                            "raw" of equal length, in entry id order; the blocks of the
                            other streams first, then the heartbeats'
                "end"       last: "entries", the number of entries of each stream

A reader of version 1 refuses a higher version (a newer qwc wrote it). Anything else that
does not fit — another magic, a damaged compressed body, a record that does not validate,
a missing end — is a :class:`schemas.errors.RecordingError` saying what and where, never a
traceback. Files are written to ``FILE.part`` and renamed when complete.
"""

from __future__ import annotations

import lzma
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol, TypeVar

import msgpack
from pydantic import BaseModel, ValidationError

from schemas.errors import RecordingError
from workers.replay.records import Block, RecordingHeader, Snapshot

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Recording",
    "RecordingWriter",
    "read_recording",
]

MAGIC = b"\x89QWCREC\n"
FORMAT_VERSION = 1
_ZLIB, _LZMA = 1, 2
_PREAMBLE_LEN = len(MAGIC) + 3
_READ_BYTES = 1 << 20
_MAX_RECORD_BYTES = 256 << 20  # one block is a few MB; more is damage

M = TypeVar("M", bound=BaseModel)


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


class RecordingWriter:
    """Writes a recording: ``header``, ``snapshot``, then ``block`` calls (other streams
    first, heartbeats last), then ``close``. Use it as a context manager: an exception
    leaves no file behind."""

    def __init__(self, path: str | Path, *, compression: str = "zlib", level: int = 6) -> None:
        self.path = Path(path)
        self._part = self.path.with_name(self.path.name + ".part")
        if compression not in ("zlib", "lzma"):
            raise ValueError(f"compression is zlib or lzma, not {compression!r}")
        code = _ZLIB if compression == "zlib" else _LZMA
        self._compressor: Any = (
            zlib.compressobj(level) if code == _ZLIB else lzma.LZMACompressor(preset=level)
        )
        self._file: BinaryIO = self._part.open("wb")
        self._file.write(MAGIC + FORMAT_VERSION.to_bytes(2, "big") + bytes([code]))
        self.entries: dict[str, int] = {}
        self._stage = "header"

    def header(self, header: RecordingHeader) -> None:
        self._expect("header", "snapshot")
        self._write({"k": "header", **header.model_dump(mode="json")})

    def snapshot(self, snapshot: Snapshot) -> None:
        self._expect("snapshot", "blocks")
        self._write({"k": "snapshot", **snapshot.model_dump(mode="json")})

    def block(
        self, stream: str, ms: Sequence[int], seq: Sequence[int], raw: Sequence[bytes]
    ) -> None:
        """Append entries of ``stream`` (ids ``ms[i]-seq[i]``, payloads ``raw[i]``)."""
        if not len(ms) == len(seq) == len(raw):
            raise ValueError("ms, seq and raw must have the same length")
        if self._stage == "heartbeats" and stream != "heartbeats":
            raise ValueError("the heartbeats' blocks come last")
        self._expect("blocks", "heartbeats" if stream == "heartbeats" else "blocks")
        if not ms:
            return
        self._write({"k": "block", "stream": stream, "ms": ms, "seq": seq, "raw": raw})
        self.entries[stream] = self.entries.get(stream, 0) + len(ms)

    def close(self) -> Path:
        """Write the end record, flush, and move the file into place."""
        if self._stage == "heartbeats":
            self._stage = "blocks"
        self._expect("blocks", "closed")
        self._write({"k": "end", "entries": self.entries})
        self._file.write(self._compressor.flush())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._part.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        self._file.close()
        self._part.unlink(missing_ok=True)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self.abort()
        elif self._stage != "closed":
            self.close()

    def _expect(self, stage: str, then: str) -> None:
        if self._stage == "heartbeats" and stage == "blocks":
            stage = "heartbeats"
        if self._stage != stage:
            raise ValueError(f"recording writer: {stage} written at stage {self._stage}")
        self._stage = then

    def _write(self, record: Mapping[str, Any]) -> None:
        self._file.write(self._compressor.compress(msgpack.packb(record, use_bin_type=True)))


class Recording:
    """A recording being read: ``header``, ``snapshot`` and the entries of the other streams
    (``streams``: name -> blocks) are read on opening; :meth:`heartbeat_blocks` streams the
    rest. Raises :class:`RecordingError` for anything that is not a complete recording."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = self.path.open("rb")
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        try:
            self._records = self._objects(self._open_body())
            self.header = self._model(self._next("header"), RecordingHeader)
            self.snapshot = self._model(self._next("snapshot"), Snapshot)
            self.streams: dict[str, list[Block]] = {}
            self._pending: Block | None = None
            self._counts: dict[str, int] = {}
            self._last_ms: dict[str, int] = {}
            self._ended = False
            self._read_small_streams()
        except BaseException:
            self._file.close()
            raise

    def heartbeat_blocks(self) -> Iterator[Block]:
        """The heartbeats' blocks in entry id order; checks the end record after the last."""
        if self._pending is not None:
            block, self._pending = self._pending, None
            yield block
        if self._ended:
            return
        for record in self._records:
            kind = record.get("k")
            if kind == "end":
                self._check_end(record)
                return
            block = self._block(record)
            if block.stream != "heartbeats":
                raise self._corrupt(f"a {block.stream} block after the heartbeats' blocks")
            yield block
        raise self._truncated("no end record")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def _open_body(self) -> _Decompressor:
        pre = self._file.read(_PREAMBLE_LEN)
        if len(pre) < len(MAGIC) or pre[: len(MAGIC)] != MAGIC:
            raise RecordingError(f"{self.path}: not a qwc recording (no recording magic)")
        if len(pre) < _PREAMBLE_LEN:
            raise self._truncated("the header is cut short")
        version = int.from_bytes(pre[8:10], "big")
        if version > FORMAT_VERSION:
            raise RecordingError(
                f"{self.path}: recording format version {version} is newer than this qwc "
                f"reads ({FORMAT_VERSION}); replay it with a newer qwc"
            )
        if version < 1:
            raise self._corrupt(f"format version {version}")
        if pre[10] == _ZLIB:
            return zlib.decompressobj()
        if pre[10] == _LZMA:
            return lzma.LZMADecompressor()
        raise self._corrupt(f"unknown compression {pre[10]}")

    def _objects(self, body: _Decompressor) -> Iterator[dict[str, Any]]:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_MAX_RECORD_BYTES)
        fed = 0
        while True:
            chunk = self._file.read(_READ_BYTES)
            if not chunk:
                break
            try:
                data = body.decompress(chunk)
            except (zlib.error, lzma.LZMAError) as exc:
                raise self._corrupt(f"compressed data: {exc}") from None
            if body.unused_data:
                raise self._corrupt("data after the end of the compressed body")
            fed += len(data)
            yield from self._unpack(unpacker, data)
        if not body.eof:
            raise self._truncated("the compressed body is cut short")
        if unpacker.tell() != fed:
            raise self._truncated("the last record is cut short")

    def _unpack(self, unpacker: Any, data: bytes) -> Iterator[dict[str, Any]]:
        try:
            unpacker.feed(data)
            for obj in unpacker:
                if not isinstance(obj, dict):
                    raise self._corrupt(f"a record is a {type(obj).__name__}, not a map")
                yield obj
        except RecordingError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types
            raise self._corrupt(f"msgpack: {type(exc).__name__}: {exc}") from None

    def _next(self, kind: str) -> dict[str, Any]:
        record = next(self._records, None)
        if record is None:
            raise self._truncated(f"no {kind} record")
        if record.get("k") != kind:
            raise self._corrupt(f"expected the {kind} record, found {record.get('k')!r}")
        return record

    def _read_small_streams(self) -> None:
        for record in self._records:
            if record.get("k") == "end":
                self._check_end(record)
                return
            block = self._block(record)
            if block.stream == "heartbeats":
                self._pending = block
                return
            self.streams.setdefault(block.stream, []).append(block)
        raise self._truncated("no end record")

    def _block(self, record: dict[str, Any]) -> Block:
        if record.get("k") != "block":
            raise self._corrupt(f"expected a block record, found {record.get('k')!r}")
        stream, ms, seq, raw = (record.get(k) for k in ("stream", "ms", "seq", "raw"))
        if not (
            isinstance(stream, str)
            and isinstance(ms, list)
            and isinstance(seq, list)
            and isinstance(raw, list)
            and len(ms) == len(seq) == len(raw) > 0
        ):
            raise self._corrupt("a block record is malformed")
        try:  # entry times are ints in id order (a TypeError: not ints)
            ordered = isinstance(ms[0], int) and all(a <= b for a, b in pairwise(ms))
        except TypeError:
            ordered = False
        if not ordered or ms[0] < self._last_ms.get(stream, 0):
            raise self._corrupt(f"{stream} entries out of id order")
        self._last_ms[stream] = ms[-1]
        self._counts[stream] = self._counts.get(stream, 0) + len(ms)
        return Block(stream, ms, seq, raw)

    def _check_end(self, record: dict[str, Any]) -> None:
        self._ended = True
        if record.get("entries") != self._counts:
            raise self._corrupt(
                f"the end record counts {record.get('entries')}, the blocks {self._counts}"
            )
        if next(self._records, None) is not None:
            raise self._corrupt("records after the end record")

    def _model(self, record: dict[str, Any], model: type[M]) -> M:
        body = {k: v for k, v in record.items() if k != "k"}
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise self._corrupt(f"{record.get('k')} record: {problems}") from None

    def _corrupt(self, what: str) -> RecordingError:
        return RecordingError(f"{self.path}: corrupt recording: {what}")

    def _truncated(self, what: str) -> RecordingError:
        return RecordingError(f"{self.path}: truncated recording: {what}")


def read_recording(path: str | Path) -> Recording:
    """Open the recording at ``path`` (use as a context manager). Raises RecordingError."""
    return Recording(path)
