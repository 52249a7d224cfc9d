"""The replay's virtual clock: timers kept in a heap and fired in time order.

The clock is the entries' ids: before an entry at ``t`` is applied, every timer due
before ``t`` fires, at its own time. Timers due at the same millisecond fire in the order
of their kind (a view restart, as a worker's pass checks the server first; a member's
liveness deadline, then an attempt window's end, then a due proposal: a proposal sees the
state changes of its millisecond), then of their key, so the order never depends on how
they were scheduled.
"""

from __future__ import annotations

import heapq

__all__ = ["DEADLINE", "DUE", "VIEW_RESTART", "WINDOW_END", "Timers"]

VIEW_RESTART = -1  # the view restarts its grace on another Redis server (key: "")
DEADLINE = 0  # a member's next liveness deadline (key: member uuid)
WINDOW_END = 1  # the end of a member's attempt window (key: "<kind>:<uuid>")
DUE = 2  # a proposal due, or held and checked again (key: proposal id)


class Timers:
    """A heap of ``(time_ms, kind, key)``."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, str]] = []

    def at(self, time_ms: int, kind: int, key: str) -> None:
        """Fire ``(kind, key)`` at ``time_ms``."""
        heapq.heappush(self.heap, (time_ms, kind, key))

    def pop_before(self, time_ms: int) -> tuple[int, int, str] | None:
        """The earliest timer due before ``time_ms`` (removed), or None."""
        heap = self.heap
        if heap and heap[0][0] < time_ms:
            return heapq.heappop(heap)
        return None

    def __len__(self) -> int:
        return len(self.heap)
