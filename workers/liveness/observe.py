"""One batch of heartbeats against the shared view: the thin Redis side of
:mod:`workers.liveness.known` (which decides what to write and read).

:class:`Batch` queues the batch's writes, the read-back of the members that may change,
the count of stored-content changes and the membership changes since the last batch on
the caller's pipeline (which also acks the entries: one round trip), and takes the
replies in. Then, only when needed: a script stores the heartbeats whose content may have
changed (:func:`workers.liveness.info.write_info`), and another round trip reads back the
members this batch skipped that another replica changed meanwhile. The caller decides the
observations and applies the transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from schemas.keys import Keys
from workers.bus.streams import entry_ms
from workers.liveness import view
from workers.liveness.beats import Heard
from workers.liveness.info import queue_info_count, write_info
from workers.liveness.known import CHANGES_PAGE, KnownView, latest_beats
from workers.liveness.rules import MemberObservation

__all__ = ["Batch"]


class Batch:
    """The heartbeats ``beats`` of one batch, observed at ``now_ms`` (server ms)."""

    def __init__(self, keys: Keys, known: KnownView, beats: Sequence[Heard], now_ms: int) -> None:
        self.keys = keys
        self.known = known
        self.latest = latest_beats(beats)
        self.plan = known.plan(self.latest, now_ms)
        self._at: tuple[int, int, int] | None = None  # where the replies are (see queue)

    def names(self, uuids: Sequence[str]) -> dict[str, str]:
        """The names of members of this batch, from their heartbeats."""
        return {uuid: self.latest[uuid][1].name for uuid in uuids}

    def queue(self, pipe: Any) -> None:
        """Queue the writes, then the membership changes since the last batch (after the
        writes: a change applied before them shows), the read-backs (after the changes:
        what they read is newer), and the count of stored-content changes, on ``pipe``."""
        if not self.latest:
            return
        p = self.plan
        view.queue_record(pipe, self.keys, p.seen, watch=p.watch)
        changes_at = len(pipe)
        view.queue_changes(pipe, self.keys, p.changes_after, CHANGES_PAGE)
        view.queue_read_back(pipe, self.keys, p.read)
        count_at = len(pipe)
        queue_info_count(pipe, self.keys)
        self._at = (count_at, changes_at + 1, changes_at)  # the count, the states, the changes

    def observed(self, r: redis.Redis, replies: Sequence[Any]) -> list[MemberObservation]:
        """Take in the replies of the pipeline; store the heartbeats whose content may have
        changed (a second round trip, when any did); returns the members to decide: those
        read back, and (after a round trip more, rare) the skipped ones another replica
        changed."""
        if self._at is None:
            return []
        count_at, read_at, changes_at = self._at
        read = _read_back(self.plan.read, replies, read_at)
        follow = self.known.learn(
            self.plan,
            self.latest,
            read,
            _count(replies[count_at]),
            view.changes_from(replies[changes_at]),
        )
        if follow.info:
            info = {u: (self.latest[u][1], self.latest[u][3]) for u in follow.info}
            count, stored = write_info(r, self.keys, info)
            self.known.wrote_info(self.latest, follow.info, count, stored)
        return read + self._read_changed(r, follow.read) if follow.read else read

    def _read_changed(self, r: redis.Redis, uuids: list[str]) -> list[MemberObservation]:
        """Read back skipped members another replica changed (watching them again)."""
        pipe = r.pipeline(transaction=False)
        watch = {u: entry_ms(self.latest[u][0]) for u in uuids}
        view.queue_record(pipe, self.keys, {}, watch=watch)
        view.queue_read_back(pipe, self.keys, uuids)
        replies = pipe.execute()
        read = _read_back(uuids, replies, 1)
        self.known.observed(read)
        return read


def _read_back(uuids: list[str], replies: Sequence[Any], at: int) -> list[MemberObservation]:
    if not uuids:
        return []
    return view.observations_from(uuids, replies[at], replies[at + 1])


def _count(reply: Any) -> int:
    """The reply of ``GET view:info:writes`` (None: never written)."""
    return 0 if reply is None else int(reply)
