"""The bounded output of an execution: its head and its tail, in bounded memory (pure).

``qwcontrol.executions.output.maxBytes`` (default 64 KiB) of each execution's output is
kept: up to half of it from the start, the rest from the end. When the output was longer,
the two parts are joined by a marker saying how many bytes were dropped, so a reader sees
how the run began (arguments, the first error) and how it ended (the last lines, the
traceback). The collector holds at most ``max_bytes`` plus one chunk, however long the
command prints.
"""

from __future__ import annotations

import codecs

__all__ = ["DEFAULT_OUTPUT_MAX_BYTES", "OutputCollector", "dropped_marker"]

DEFAULT_OUTPUT_MAX_BYTES = 64 * 1024


def dropped_marker(dropped_bytes: int) -> str:
    """The line between the head and the tail of a cut output."""
    return f"\n[... {dropped_bytes} bytes of output dropped ...]\n"


class OutputCollector:
    """Feed it the output as it comes (:meth:`feed`, bytes); :meth:`text` is what is kept.

    ``max_bytes`` >= 0 bytes are kept: the first ``max_bytes // 2`` and the last
    ``max_bytes - max_bytes // 2``. Not thread-safe: one reader feeds it. Text is decoded
    as UTF-8 (undecodable bytes become U+FFFD); a character cut by the head or tail
    boundary is left out rather than mangled.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.max_bytes = max_bytes
        self._head_cap = max_bytes // 2
        self._tail_cap = max_bytes - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total_bytes = 0

    def feed(self, data: bytes) -> None:
        """Add the next ``data`` of the output."""
        self.total_bytes += len(data)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        if len(self._tail) > 2 * self._tail_cap:  # trim now and then: amortised O(1)
            del self._tail[: len(self._tail) - self._tail_cap]

    @property
    def held_bytes(self) -> int:
        """Bytes held in memory now: at most ``max_bytes`` + ``max_bytes // 2`` + 1 (the
        tail is trimmed once it doubles), plus nothing else."""
        return len(self._head) + len(self._tail)

    @property
    def dropped_bytes(self) -> int:
        """How many bytes of the middle were not kept."""
        return max(0, self.total_bytes - self.max_bytes)

    def text(self) -> str:
        """The kept output: everything when it fit, else head + marker + tail."""
        tail = bytes(self._tail[max(0, len(self._tail) - self._tail_cap) :])
        if not self.dropped_bytes:
            return (bytes(self._head) + tail).decode("utf-8", errors="replace")
        head = codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(self._head))
        return head + dropped_marker(self.dropped_bytes) + _decode_tail(tail)


def _decode_tail(data: bytes) -> str:
    """``data`` decoded, without the continuation bytes of a character cut at its start."""
    skip = 0
    while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
        skip += 1
    return data[skip:].decode("utf-8", errors="replace")
