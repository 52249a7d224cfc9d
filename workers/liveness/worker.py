"""The liveness worker: heartbeats in, state changes out.

One loop step: read a batch of heartbeats (consumer group ``liveness``), blocking at most
until the next member's deadline; record them in the view, writing only what changed
(:mod:`workers.liveness.known`); apply the transitions the pure rules decide (each emitted
once, by compare-and-set); sweep members whose deadline passed; then copy new membership
changes into the store's ``cluster_members`` (group ``liveness-store``, idempotent). Bad
entries go to the dead-letter stream and are acked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import redis

from schemas.keys import GROUP_LIVENESS, Keys
from schemas.messages import Heartbeat, MembershipChange, Message
from schemas.settings import Settings
from workers.bus.connect import BLOCK_MS_MAX
from workers.bus.retry import Prepared, run_forever
from workers.bus.streams import (
    Decoded,
    Entry,
    ack,
    autoclaim,
    dead_letter,
    decode_entries,
    ensure_group,
    entry_ms,
    read_by_deadline,
    read_group,
    read_pending,
)
from workers.gcpause import gc_paused
from workers.liveness import trust, view
from workers.liveness.beats import Heard, HeartbeatDecoder
from workers.liveness.known import KnownView
from workers.liveness.observe import Batch
from workers.liveness.rules import (
    MemberObservation,
    Thresholds,
    Transition,
    decide,
    next_deadline_ms,
)
from workers.store import Store, known_member_uuids, record_member_state

__all__ = ["GROUP_MEMBERS_STORE", "LivenessWorker"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

GROUP_MEMBERS_STORE = "liveness-store"
BATCH = 1000
RECLAIM_IDLE_MS = 10_000
HOUSEKEEPING_EVERY_MS = 5_000
COPY_EVERY_MS = 250  # also right after this replica applied a change


class LivenessWorker:
    """One replica of the liveness worker. Several may share the consumer group."""

    def __init__(
        self,
        client: redis.Redis,
        store: Store,
        settings: Settings,
        *,
        consumer: str,
        stop: threading.Event | None = None,
        batch: int = BATCH,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """``clock``: the time (ms) to judge by instead of the Redis server's ``TIME`` (a
        virtual clock, in tests; heartbeat entry ids must then be stamped on it too)."""
        self.redis = client
        self.clock = clock
        self.batch = batch
        self.store = store
        self.keys = Keys(settings.redis_prefix)
        self.th = Thresholds.from_seconds(
            settings.heartbeat_consider_inactive_s, settings.heartbeat_consider_dead_s
        )
        self.consumer = consumer
        self.stop = stop or threading.Event()
        self._wait_ms = 0
        self._next_housekeeping_ms = 0
        self._next_copy_ms = 0
        self.next_deadline_ms: int | None = None  # the next member's deadline, after a step
        self.known = KnownView(self.th)
        self._decoder = HeartbeatDecoder()
        self._prepared = Prepared(self.prepare)
        secret = settings.heartbeat_secret
        self.secret = None if secret is None else secret.get_secret_value().encode()
        self._info_denied = False  # INFO refused: the server-change check is off

    def run(self) -> None:
        """Run until ``stop`` is set; transient Redis/SQL errors are logged and retried."""
        log.info("liveness worker %s: starting", self.consumer)
        run_forever(self.step, stop=self.stop, what="liveness worker", logger=log)
        log.info("liveness worker %s: stopped", self.consumer)

    def prepare(self) -> None:
        """Check which Redis server this is, create the consumer groups and handle what this
        consumer held before a crash. Runs again after every transient error (a lost
        connection, a Redis restarted empty: ``NOGROUP``)."""
        clock = self._clock()
        ensure_group(self.redis, self.keys.heartbeats, GROUP_LIVENESS)
        ensure_group(self.redis, self.keys.membership, GROUP_MEMBERS_STORE)
        pending = read_pending(
            self.redis, self.keys.heartbeats, GROUP_LIVENESS, self.consumer, count=self.batch
        )
        if pending:  # newer heartbeats may follow unread: judge only up to these
            self._handle_heartbeats(pending, self._horizon(clock, pending, full=True))

    def step(self, *, block: bool = True) -> None:
        """One pass: read heartbeats (blocking at most until the next deadline; not at all
        with ``block`` false), read the clock, observe the heartbeats, sweep silent
        members, copy new changes to the store. Four round trips when quiet.

        Every pass first checks which Redis server it reads (:mod:`workers.liveness.clock`).
        A transient error makes the next pass prepare again (consumer groups). The cyclic
        garbage collector is paused during the pass (:mod:`workers.gcpause`)."""
        with gc_paused():
            self._prepared.run(lambda: self._step(block))

    def _step(self, block: bool) -> None:
        entries = read_by_deadline(
            lambda block_ms: read_group(
                self.redis,
                self.keys.heartbeats,
                GROUP_LIVENESS,
                self.consumer,
                count=self.batch,
                block_ms=block_ms,
            ),
            self._wait_ms if block else 0,
            self.stop,
        )
        clock = self._horizon(self._clock(), entries, full=len(entries) >= self.batch)
        if clock.now_ms >= self._next_housekeeping_ms:
            self._housekeeping(clock)
        changed, heard = self._handle_heartbeats(entries, clock) if entries else (False, [])
        self._wait_ms, swept = self._sweep(clock, heard)
        if changed or swept or clock.now_ms >= self._next_copy_ms:
            self._copy_changes_to_store()
            self._next_copy_ms = clock.now_ms + COPY_EVERY_MS

    @staticmethod
    def _horizon(clock: view.Clock, entries: Sequence[Any], *, full: bool) -> view.Clock:
        """The clock to judge silence by. Caught up (the read returned less than a full
        batch), every heartbeat up to the server's ``now`` has been read. Behind (a full
        batch), heartbeats newer than the last one read may wait unread in the stream: a
        member is silent only as far as the stream was read, so ``now`` is capped at the
        last entry read. Without the cap a worker that fell behind by more than
        considerInactive would declare members inactive or dead whose heartbeats it has not
        read yet, and the false transitions would slow it down further."""
        if not full or not entries:
            return clock
        read_up_to_ms = entry_ms(entries[-1][0])
        return replace(clock, now_ms=min(clock.now_ms, read_up_to_ms))

    def _clock(self) -> view.Clock:
        """The clock, after the server check (which may restart the grace rule first)."""
        now_ms = None if self.clock is None else self.clock()
        read = view.read_clock(
            self.redis, self.keys, self.th.inactive_ms, now_ms, check_server=not self._info_denied
        )
        if isinstance(read, view.ServerNews):
            self._server_news(read, now_ms)
            read = view.read_clock(self.redis, self.keys, self.th.inactive_ms, now_ms)
        if read.view_created:
            log.warning(
                "liveness view started at %s ms (new or lost): no member is declared dead "
                "before %.1f s of observation",
                read.view_started_ms,
                self.th.dead_ms / 1000,
            )
            self._next_housekeeping_ms = 0
        self.known.sync(read.view_started_ms)
        return read

    def _server_news(self, news: view.ServerNews, now_ms: int | None) -> None:
        """The view is read on another Redis server than before: restart the grace rule.
        A Redis user not allowed ``INFO`` (an ACL without ``+info``) skips the check from
        now on, saying so once: failovers then do not restart the grace."""
        if news.run_id is None:
            self._info_denied = True
            log.error(
                "liveness: cannot read the Redis server's run_id (INFO server: %s); a "
                "failover will not restart the grace rule and may cause false deaths: "
                "allow INFO for this Redis user (ACL +info)",
                news.refused,
            )
            return
        started_ms = view.note_server(self.redis, self.keys, news.run_id, now_ms)
        if started_ms is not None:
            log.warning(
                "liveness: Redis is another server than before (failover or restart): the "
                "view restarts at %s ms; no member is declared dead before %.1f s of "
                "observation",
                started_ms,
                self.th.dead_ms / 1000,
            )

    def _housekeeping(self, clock: view.Clock) -> None:
        """Watch store members never heard of; take over heartbeats a dead replica held;
        forget what this replica knew of the view (whatever it missed, it cannot mislead
        for longer)."""
        self.known.forget()
        uuids = known_member_uuids(self.store)
        added = view.seed_unseen(self.redis, self.keys, uuids, clock.now_ms)
        if added:
            log.info("liveness: watching %s store member(s) not heard since the view began", added)
        _, stale = autoclaim(
            self.redis,
            self.keys.heartbeats,
            GROUP_LIVENESS,
            self.consumer,
            min_idle_ms=RECLAIM_IDLE_MS,
            count=self.batch,
        )
        if stale:
            self._handle_heartbeats(stale, clock)
        self._next_housekeeping_ms = clock.now_ms + HOUSEKEEPING_EVERY_MS

    def _handle_heartbeats(
        self, entries: Sequence[Entry], clock: view.Clock
    ) -> tuple[bool, list[int]]:
        """Record heartbeats, ack them (one round trip), then apply due transitions.

        Only heartbeats the checks of :mod:`workers.liveness.trust` believe are recorded
        (stamped in the future; with ``heartbeat.secret``: unsigned, wrongly signed,
        replayed); the others are dead-lettered with the reason, and acked too.
        A crash between the two only delays a transition to the member's next heartbeat.
        Returns whether this call applied a state change, and the deadlines of the members
        it heard.
        """
        ids = [e[0] for e in entries]
        entries = trust.not_future(self.redis, self.keys, entries, clock.now_ms)
        pipe = self.redis.pipeline(transaction=False)
        refused: list[trust.Refused] = []
        if self.secret is not None:
            entries, refused = trust.signed(entries, self.secret)
        beats, bad = self._decoder.decode(entries)
        self._dead_letter(bad, Heartbeat, self.keys.heartbeats, pipe, clock.now_ms)
        if self.secret is not None:
            beats, replayed = trust.not_replayed_by(self.redis, self.keys, beats, _described)
            refused += replayed
        self._refuse(pipe, refused, clock.now_ms)
        batch = Batch(self.keys, self.known, beats, clock.now_ms)
        batch.queue(pipe)
        ack(self.redis, self.keys.heartbeats, GROUP_LIVENESS, ids, pipeline=pipe)
        observed = batch.observed(self.redis, pipe.execute())
        transitions = decide(observed, clock.now_ms, clock.view_started_ms, self.th)
        names = batch.names([t.uuid for t in transitions])
        applied = self._apply(transitions, clock.now_ms, names, "heartbeat")
        heard = self._deadlines(observed, clock)
        if batch.plan.heard_deadline_ms is not None:
            heard.append(batch.plan.heard_deadline_ms)
        return bool(applied), heard

    def _apply(
        self, transitions: Sequence[Transition], now_ms: int, names: dict[str, str], reason: str
    ) -> list[MembershipChange]:
        """Compare-and-set ``transitions``, telling what this replica knows which held."""
        applied = view.apply_transitions(
            self.redis, self.keys, transitions, now_ms=now_ms, names=names, reason=reason
        )
        self.known.applied(applied)
        self.known.failed({t.uuid for t in transitions} - {c.uuid for c in applied})
        return applied

    def _deadlines(self, observed: Sequence[MemberObservation], clock: view.Clock) -> list[int]:
        """The next deadline of each of ``observed`` that has one."""
        now_ms, started_ms, th = clock.now_ms, clock.view_started_ms, self.th
        return [
            d
            for o in observed
            if (d := next_deadline_ms(o.last_seen_ms, now_ms, started_ms, th, o.known_since_ms))
            is not None
        ]

    def _refuse(self, pipe: Any, refused: Sequence[trust.Refused], now_ms: int) -> None:
        """Dead-letter heartbeats not to believe and delete them from the stream, through
        ``pipe``: they decode as heartbeats, and ``qwc record`` must not take them for real."""
        for x in refused:
            dead_letter(
                self.redis,
                self.keys,
                origin_stream=self.keys.heartbeats,
                entry_id=x.entry_id,
                raw=x.raw,
                reason=x.reason,
                pipeline=pipe,
                now_ms=now_ms,
            )
        if refused:
            pipe.xdel(self.keys.heartbeats, *[x.entry_id for x in refused])

    def _valid(
        self,
        entries: Sequence[Entry],
        kind: type[M],
        stream: str,
        pipe: Any,
    ) -> list[tuple[bytes, M, bytes]]:
        """Entries that decode to ``kind``; the others are dead-lettered through ``pipe``."""
        good: list[tuple[bytes, M, bytes]] = []
        bad: list[Decoded] = []
        for d in decode_entries(entries):
            if isinstance(d.message, kind):
                good.append((d.entry_id, d.message, d.raw))
            else:
                bad.append(d)
        self._dead_letter(bad, kind, stream, pipe)
        return good

    def _dead_letter(
        self,
        bad: Sequence[Decoded],
        kind: type[Message],
        stream: str,
        pipe: Any,
        now_ms: int | None = None,
    ) -> None:
        """Dead-letter entries that are not a ``kind`` through ``pipe``, with the reason."""
        for d in bad:
            reason = d.error or f"expected {kind.TYPE}, got {getattr(d.message, 'TYPE', '?')}"
            dead_letter(
                self.redis,
                self.keys,
                origin_stream=stream,
                entry_id=d.entry_id,
                raw=d.raw,
                reason=reason,
                pipeline=pipe,
                now_ms=now_ms,
            )

    def _sweep(self, clock: view.Clock, heard: Sequence[int] = ()) -> tuple[int, bool]:
        """Apply due transitions of silent members.

        ``heard`` are the deadlines of members heard in this step after ``clock`` was read.
        Returns (ms until the next deadline, capped at BLOCK_MS_MAX; whether a transition
        was applied); sets ``next_deadline_ms``.
        """
        now_ms, started_ms = clock.now_ms, clock.view_started_ms
        observed = view.read_observations(self.redis, self.keys, clock.candidates)
        self.known.observed(observed)
        transitions = decide(observed, now_ms, started_ms, self.th)
        applied = []
        if transitions:
            names = view.read_names(self.redis, self.keys, [t.uuid for t in transitions])
            applied = self._apply(transitions, now_ms, names, "silence")
        deadlines = [*self._deadlines(observed, clock), *heard]
        if clock.first_active_score_ms is not None:
            deadlines.append(clock.first_active_score_ms + self.th.inactive_ms)
        self.next_deadline_ms = min(deadlines, default=None)
        wait_ms = (self.next_deadline_ms or now_ms + BLOCK_MS_MAX) - now_ms
        return max(1, min(BLOCK_MS_MAX, wait_ms)), bool(applied)

    def _copy_changes_to_store(self) -> None:
        """Membership changes -> ``cluster_members``: idempotent upserts, one transaction."""
        entries = read_group(
            self.redis,
            self.keys.membership,
            GROUP_MEMBERS_STORE,
            self.consumer,
            count=BATCH,
            block_ms=None,
        )
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        changes = [
            c for _, c, _ in self._valid(entries, MembershipChange, self.keys.membership, pipe)
        ]
        info = view.read_heartbeats(self.redis, self.keys, sorted({c.uuid for c in changes}))
        with self.store.begin() as conn:
            for c in changes:
                hb = info.get(c.uuid)
                record_member_state(
                    conn,
                    uuid=c.uuid,
                    name=c.name or (hb.name if hb else ""),
                    state=c.to_state.value,
                    last_seen_ms=c.last_seen_ms or None,
                    changed_ms=c.at_ms,
                    tags=hb.tags if hb else None,
                    passive=hb.passive if hb else None,
                    version=hb.version if hb else "",
                )
        ids = [e[0] for e in entries]
        ack(self.redis, self.keys.membership, GROUP_MEMBERS_STORE, ids, pipeline=pipe)
        pipe.execute()


def _described(h: Heard) -> tuple[bytes, str, int, int, bytes]:
    """What the replay check needs of a heartbeat (see ``trust.not_replayed_by``)."""
    entry_id, content, seq, raw = h
    return entry_id, content.uuid, content.started_at_ms, seq, raw
