"""What one liveness worker replica knows of the shared view: what a batch of heartbeats
must write, and which states it must read back. Pure: no Redis, no clock.

Almost every heartbeat moves nothing but its member's last-seen time. So, per batch:

- every member's last-seen time is written (one ``ZADD GT``);
- its stored heartbeat (``view:info``) is checked, and set when its content differs
  (:mod:`workers.liveness.info`), only when it differs from the content this replica
  knows is stored. Every change of a stored content counts in ``view:info:writes``, read
  with every batch: when it moved by more than this replica's own changes, someone else
  changed a stored content, and the replica checks every member of the batch;
- its watch score (the sweep's index) when the member may change, or when the score this
  replica wrote is :attr:`KnownView.refresh_watch_ms` (half of considerInactive) older
  than the heartbeat: a member heartbeating more often than that never becomes a sweep
  candidate; a silent one becomes one a little early, and the sweep decides it, as any
  other, at its exact deadline;
- its state and last-seen time are read back, and decided, unless this replica knows the
  member is active and the heartbeat keeps it active (``rules.heard_may_change``, applied
  to the batch with ``rules.active_after_ms``).

What a replica knows of the states is only a hint: changes still go through the view's
compare-and-set, which alone applies and emits them. It is kept true by every state this
replica reads, every change it applies, and the membership stream, which carries every
change any replica applies and is read in the same round trip as the heartbeats' writes,
after them: a change another replica applied before those writes is seen there, and the
members it touched that this batch skipped are read back and decided at once (another
round trip, rare); a change applied after those writes had to compare against the new
last-seen time, and failed. Until the stream has been read to its end, or after the view
restarted, nothing is skipped. The worker also forgets it all at every housekeeping pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.messages import Heartbeat, MembershipChange, MemberState
from workers.liveness.beats import Heard
from workers.liveness.info import same_content
from workers.liveness.rules import (
    MemberObservation,
    Thresholds,
    active_after_ms,
    next_deadline_ms,
)

__all__ = ["CHANGES_PAGE", "FollowUp", "KnownView", "Plan", "latest_beats"]

CHANGES_PAGE = 5000  # membership changes read per batch at most
UUIDS_KEPT = 200_000  # member uuids kept encoded (forgotten when more)
ACTIVE = MemberState.ACTIVE


def latest_beats(beats: Iterable[Heard]) -> dict[str, Heard]:
    """Each member's newest heartbeat of a batch (``beats`` in stream order: the last)."""
    return {b[1].uuid: b for b in beats}


@dataclass
class Plan:
    """What one batch writes and reads (see the module docstring)."""

    seen: dict[bytes, bytes] = field(default_factory=dict)  # every member: newest entry ms
    watch: dict[str, int] = field(default_factory=dict)  # watch scores to move
    info: list[str] = field(default_factory=list)  # members whose stored content may differ
    read: list[str] = field(default_factory=list)  # members to read back and decide
    changes_after: bytes | None = None  # read the membership stream after this entry
    heard_deadline_ms: int | None = None  # the earliest deadline of the members not read


@dataclass
class FollowUp:
    """What a batch must still do after its first round trip (usually nothing)."""

    read: list[str] = field(default_factory=list)  # skipped members another replica changed
    info: list[str] = field(default_factory=list)  # members whose stored content to check

    def __bool__(self) -> bool:
        return bool(self.read or self.info)


class KnownView:
    """One replica's knowledge of the shared view (see the module docstring)."""

    def __init__(self, th: Thresholds) -> None:
        self.th = th
        self.refresh_watch_ms = th.inactive_ms // 2
        self.view_started_ms: int | None = None
        self._uuid_bytes: dict[str, bytes] = {}
        self.forget()

    def forget(self) -> None:
        """Know nothing: the next batch writes and reads everything."""
        self._states: dict[str, tuple[MemberState, int]] = {}  # state, last seen lower bound
        self._watch_ms: dict[str, int] = {}  # a watch score at most the member's real one
        self._stored: dict[str, Heartbeat] = {}  # content of the stored heartbeat
        self._info_writes = -1  # view:info:writes as we left it (-1: unknown)
        self.changes_after: bytes | None = None  # membership read up to this entry
        self._caught_up = False  # the membership stream was read to its end

    def sync(self, view_started_ms: int) -> None:
        """Forget everything when the view restarted (lost, or read on another server)."""
        if view_started_ms != self.view_started_ms:
            self.forget()
            self.view_started_ms = view_started_ms

    def plan(self, latest: Mapping[str, Heard], now_ms: int) -> Plan:
        """What the batch ``latest`` (``latest_beats``) writes and reads at ``now_ms``."""
        plan = Plan(changes_after=self.changes_after)
        trusted = self._caught_up and self.view_started_ms is not None
        states = self._states if trusted else {}
        active_after = active_after_ms(now_ms, self.th)  # heard_may_change, for a batch
        refresh_ms, watch_ms, stored = self.refresh_watch_ms, self._watch_ms, self._stored
        seen, watch, info, read = plan.seen, plan.watch, plan.info, plan.read
        as_bytes = self._uuid_bytes
        oldest_ms: int | None = None  # the oldest last seen of the members not read
        for uuid, (entry_id, content, _, _) in latest.items():
            ms_bytes = entry_id[: entry_id.index(b"-")]
            ms = int(ms_bytes)
            seen[as_bytes.get(uuid) or as_bytes.setdefault(uuid, uuid.encode())] = ms_bytes
            known = states.get(uuid)
            if known is None or known[0] is not ACTIVE:
                last_ms = None
            else:
                last_ms = ms if ms > known[1] else known[1]
            if last_ms is None or last_ms <= active_after:
                read.append(uuid)
                watch[uuid] = ms
            else:
                oldest_ms = last_ms if oldest_ms is None or last_ms < oldest_ms else oldest_ms
                if ms - watch_ms.get(uuid, ms - refresh_ms) >= refresh_ms:
                    watch[uuid] = ms
            known_content = stored.get(uuid)
            if known_content is not content and (
                known_content is None or not same_content(known_content, content)
            ):
                info.append(uuid)
        if oldest_ms is not None:
            started_ms = self.view_started_ms or 0
            plan.heard_deadline_ms = next_deadline_ms(oldest_ms, now_ms, started_ms, self.th)
        if len(as_bytes) > UUIDS_KEPT:
            as_bytes.clear()
        return plan

    def learn(
        self,
        plan: Plan,
        latest: Mapping[str, Heard],
        read: Sequence[MemberObservation],
        info_writes: int,
        changes: Sequence[tuple[bytes, MembershipChange | None]],
    ) -> FollowUp:
        """Take in the replies of the batch's round trip, in their order: the membership
        changes after ``plan.changes_after`` (the page queued with ``CHANGES_PAGE``), the
        states read back after them (``read``), the count of stored-content changes
        (``view:info:writes``). Returns what the batch must still do: the stored contents
        to check and set (:func:`workers.liveness.info.write_info`, then
        :meth:`wrote_info`), the members to read back."""
        for uuid, ms in plan.watch.items():
            self._watch_ms[uuid] = max(self._watch_ms.get(uuid, ms), ms)
        touched = self._follow_changes(plan.changes_after, changes)
        self.observed(read)
        follow = FollowUp(info=plan.info)
        if touched:
            asked = set(plan.read)
            follow.read = [u for u in latest if u in touched and u not in asked]
        if info_writes != self._info_writes:
            # someone else changed stored contents: what we knew may be stale, check them
            self._stored.clear()
            follow.info = list(latest)
        self._info_writes = info_writes
        return follow

    def wrote_info(
        self, latest: Mapping[str, Heard], checked: Sequence[str], count: int, stored: int
    ) -> None:
        """``write_info`` checked the stored contents of ``checked`` (setting ``stored`` of
        them) and left ``view:info:writes`` at ``count``."""
        for uuid in checked:
            self._stored[uuid] = latest[uuid][1]
        if count == self._info_writes + stored:
            self._info_writes = count
        else:  # changed by someone else meanwhile: the next batch checks again
            self._info_writes = -1

    def observed(self, read: Iterable[MemberObservation]) -> None:
        """States and last-seen times read from the view just now."""
        for o in read:
            if o.state is None or o.last_seen_ms is None:
                self._states.pop(o.uuid, None)
            else:
                self._states[o.uuid] = (o.state, o.last_seen_ms)

    def applied(self, changes: Iterable[MembershipChange]) -> None:
        """Changes this replica's compare-and-set applied just now."""
        for c in changes:
            self._learn_change(c)

    def failed(self, uuids: Iterable[str]) -> None:
        """Members whose compare-and-set failed: another replica changed them."""
        for uuid in uuids:
            self._states.pop(uuid, None)
            self._watch_ms.pop(uuid, None)

    def _follow_changes(
        self, after: bytes | None, changes: Sequence[tuple[bytes, MembershipChange | None]]
    ) -> set[str]:
        """Apply membership changes in stream order; returns the members whose known state
        they changed (not, say, the echo of a change this replica applied)."""
        if after is None:  # where to start: the stream's last entry, read before our reads
            self.changes_after = changes[-1][0] if changes else b"0-0"
            self._caught_up = True
            return set()
        touched: set[str] = set()
        for entry_id, change in changes:
            self.changes_after = entry_id
            if change is not None and self._learn_change(change):
                touched.add(change.uuid)
        self._caught_up = len(changes) < CHANGES_PAGE
        return touched

    def _learn_change(self, c: MembershipChange) -> bool:
        """Know the state ``c`` set; returns whether that differs from what was known."""
        known = self._states.get(c.uuid)
        self._states[c.uuid] = (c.to_state, max(c.last_seen_ms, known[1] if known else 0))
        if c.to_state is MemberState.DEAD:
            self._watch_ms.pop(c.uuid, None)  # the compare-and-set took it out of the watch
        return known is None or known[0] is not c.to_state
