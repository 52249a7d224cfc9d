"""The liveness worker: heartbeats in, state changes out.

One loop step: read a batch of heartbeats (consumer group ``liveness``), blocking at most
until the next member's deadline; record them in the view; apply the transitions the pure
rules decide (each emitted once, by compare-and-set); sweep members whose deadline passed;
then copy new membership changes into the store's ``cluster_members`` (group
``liveness-store``, idempotent). Bad entries go to the dead-letter stream and are acked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

import redis

from schemas.keys import GROUP_LIVENESS, Keys
from schemas.messages import Heartbeat, MembershipChange, Message
from schemas.settings import Settings
from workers.bus.connect import BLOCK_MS_MAX, server_run_id
from workers.bus.retry import Prepared, run_forever
from workers.bus.streams import (
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
from workers.liveness import trust, view
from workers.liveness.rules import MemberObservation, Thresholds, decide, next_deadline_ms
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
    ) -> None:
        self.redis = client
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
        self._check_server()
        ensure_group(self.redis, self.keys.heartbeats, GROUP_LIVENESS)
        ensure_group(self.redis, self.keys.membership, GROUP_MEMBERS_STORE)
        pending = read_pending(
            self.redis, self.keys.heartbeats, GROUP_LIVENESS, self.consumer, count=self.batch
        )
        if pending:  # newer heartbeats may follow unread: judge only up to these
            self._handle_heartbeats(pending, self._horizon(self._clock(), pending, full=True))

    def step(self) -> None:
        """One pass: read heartbeats (blocking at most until the next deadline), observe them,
        sweep silent members, copy new changes to the store. Four round trips when quiet.

        Every pass first checks which Redis server it reads (``INFO server`` run_id): redis-py
        reconnects silently, so a failover may show in nothing else before a silent member's
        deadline. A transient error makes the next pass prepare again (consumer groups)."""
        self._prepared.run(self._step)

    def _check_server(self) -> bool:
        """Restart the grace rule when the view is now read on another Redis server; returns
        whether it did. A Redis user not allowed ``INFO`` (an ACL without ``+info``) skips
        the check, saying so once: failovers then do not restart the grace."""
        if self._info_denied:
            return False
        try:
            run_id = server_run_id(self.redis)
        except redis.ResponseError as exc:  # NOPERM, or INFO renamed away
            self._info_denied = True
            log.error(
                "liveness: cannot read the Redis server's run_id (INFO server: %s); a "
                "failover will not restart the grace rule and may cause false deaths: "
                "allow INFO for this Redis user (ACL +info)",
                exc,
            )
            return False
        started_ms = view.note_server(self.redis, self.keys, run_id)
        if started_ms is not None:
            log.warning(
                "liveness: Redis is another server than before (failover or restart): the "
                "view restarts at %s ms; no member is declared dead before %.1f s of "
                "observation",
                started_ms,
                self.th.dead_ms / 1000,
            )
        return started_ms is not None

    def _step(self) -> None:
        entries = read_by_deadline(
            lambda block_ms: read_group(
                self.redis,
                self.keys.heartbeats,
                GROUP_LIVENESS,
                self.consumer,
                count=self.batch,
                block_ms=block_ms,
            ),
            self._wait_ms,
            self.stop,
        )
        self._check_server()  # before the clock: after a failover the grace restarts first
        clock = self._horizon(self._clock(), entries, full=len(entries) >= self.batch)
        if clock.now_ms >= self._next_housekeeping_ms:
            self._housekeeping(clock)
        changed, observed = self._handle_heartbeats(entries, clock) if entries else (False, [])
        self._wait_ms, swept = self._sweep(clock, observed)
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
        clock = view.read_clock(self.redis, self.keys, self.th.inactive_ms)
        if clock.view_created:
            log.warning(
                "liveness view started at %s ms (new or lost): no member is declared dead "
                "before %.1f s of observation",
                clock.view_started_ms,
                self.th.dead_ms / 1000,
            )
            self._next_housekeeping_ms = 0
        return clock

    def _housekeeping(self, clock: view.Clock) -> None:
        """Watch store members never heard of; take over heartbeats a dead replica held."""
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
    ) -> tuple[bool, list[MemberObservation]]:
        """Record heartbeats, ack them (one round trip), then apply due transitions.

        Only heartbeats the checks of :mod:`workers.liveness.trust` believe are recorded
        (stamped in the future; with ``heartbeat.secret``: unsigned, wrongly signed,
        replayed); the others are dead-lettered with the reason, and acked too.
        A crash between the two only delays a transition to the member's next heartbeat.
        Returns whether this call applied a state change, and the members it observed.
        """
        ids = [e[0] for e in entries]
        entries = trust.not_future(self.redis, self.keys, entries, clock.now_ms)
        pipe = self.redis.pipeline(transaction=False)
        refused: list[trust.Refused] = []
        if self.secret is not None:
            entries, refused = trust.signed(entries, self.secret)
        beats = self._valid(entries, Heartbeat, self.keys.heartbeats, pipe)
        if self.secret is not None:
            beats, replayed = trust.not_replayed(self.redis, self.keys, beats)
            refused += replayed
        self._refuse(pipe, refused, clock.now_ms)
        uuids = view.queue_observe(
            pipe, self.keys, [(entry_ms(i), hb, raw) for i, hb, raw in beats]
        )
        ack(self.redis, self.keys.heartbeats, GROUP_LIVENESS, ids, pipeline=pipe)
        replies = pipe.execute()
        if not uuids:
            return False, []
        observed = view.observations_from(uuids, replies[-3], replies[-2])
        applied = view.apply_transitions(
            self.redis,
            self.keys,
            decide(observed, clock.now_ms, clock.view_started_ms, self.th),
            now_ms=clock.now_ms,
            names={hb.uuid: hb.name for _, hb, _ in beats},
            reason="heartbeat",
        )
        return bool(applied), observed

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
        for d in decode_entries(entries):
            if isinstance(d.message, kind):
                good.append((d.entry_id, d.message, d.raw))
                continue
            reason = d.error or f"expected {kind.TYPE}, got {getattr(d.message, 'TYPE', '?')}"
            dead_letter(
                self.redis,
                self.keys,
                origin_stream=stream,
                entry_id=d.entry_id,
                raw=d.raw,
                reason=reason,
                pipeline=pipe,
            )
        return good

    def _sweep(
        self, clock: view.Clock, heard: Sequence[MemberObservation] = ()
    ) -> tuple[int, bool]:
        """Apply due transitions of silent members.

        ``heard`` are members observed in this step after ``clock`` was read: their deadlines
        count too. Returns (ms until the next deadline, capped at BLOCK_MS_MAX; whether a
        transition was applied).
        """
        now_ms, started_ms = clock.now_ms, clock.view_started_ms
        observed = view.read_observations(self.redis, self.keys, clock.candidates)
        transitions = decide(observed, now_ms, started_ms, self.th)
        applied = []
        if transitions:
            names = view.read_names(self.redis, self.keys, [t.uuid for t in transitions])
            applied = view.apply_transitions(
                self.redis, self.keys, transitions, now_ms=now_ms, names=names, reason="silence"
            )
        deadlines = [
            d
            for o in (*observed, *heard)
            if (
                d := next_deadline_ms(o.last_seen_ms, now_ms, started_ms, self.th, o.known_since_ms)
            )
            is not None
        ]
        if clock.first_active_score_ms is not None:
            deadlines.append(clock.first_active_score_ms + self.th.inactive_ms)
        wait_ms = min(deadlines, default=now_ms + BLOCK_MS_MAX) - now_ms
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
