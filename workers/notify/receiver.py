"""One webhook receiver's delivery loop (:class:`ReceiverLoop`), run by the notify worker
(:mod:`workers.notify.worker`) in a thread of its own.

Per receiver, one replica at a time delivers — the one holding the receiver's lease
(``{qwc}:notify:lease:<name>``, ``SET NX PX``, renewed at each step) — one event at a
time, in stream order: a receiver gets the events in the order they happened. A replica
that takes the lease over (the previous holder stopped or died) first claims what the
group had pending (``XAUTOCLAIM``) and goes on from the oldest. Other replicas stand by.

An event is acknowledged once delivered (a 2xx answer), or once given up: then it is
appended to ``{qwc}:notifications:failed`` (:class:`FailedNotification`) in the same
round trip. In between, the failed attempts at it are kept in ``{qwc}:notify:retry:<name>``
(:class:`workers.notify.schedule.Failures`), so the schedule
(:mod:`workers.notify.schedule`) goes on across restarts and replicas: at least once,
for a bounded time. Events the receiver did not subscribe to are acknowledged unsent.

A receiver's group starts at the events of the minute before it was created (a receiver
started together with the cluster misses none of its first events; one added later does
not get the history). When Redis lost the group (it restarted empty), it is created again
the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import httpx
import redis

from schemas.codec import decode_as, encode
from schemas.errors import DecodeError
from schemas.events import event_matches
from schemas.keys import MESSAGE_FIELD, Keys, notify_group
from schemas.messages import Event, FailedNotification
from schemas.settings import Settings
from schemas.settings_webhooks import Webhook
from workers.bus.connect import BLOCK_MS_MAX
from workers.bus.retry import is_group_missing, is_transient
from workers.bus.streams import (
    Entry,
    ack,
    autoclaim,
    dead_letter,
    ensure_group,
    read_group,
    read_pending,
    server_time_ms,
)
from workers.notify.deliver import failed_entry, try_once
from workers.notify.schedule import Failures, policy_of

__all__ = ["FAILED_MAXLEN", "START_BACKLOG_MS", "STEP_MAX_S", "ReceiverLoop", "read_failures"]

log = logging.getLogger(__name__)

FAILED_MAXLEN = 10_000  # the failed list keeps about this many deliveries given up
START_BACKLOG_MS = 60_000  # a new group starts at the events of the minute before
STEP_MAX_S = BLOCK_MS_MAX / 1000  # the longest pause between two steps (lease renewals)

# KEYS: lease. ARGV: consumer, px. 2: taken now, 1: renewed (ours), 0: another replica's.
_LEASE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def read_failures(client: redis.Redis, keys: Keys, receiver: str) -> Failures | None:
    """The failed attempts at ``receiver``'s oldest undelivered event (None: none)."""
    raw = cast(dict[bytes, bytes], client.hgetall(keys.notify_retry(receiver)))
    if not raw:
        return None
    text = {k.decode(): v.decode() for k, v in raw.items()}
    status = text.get("status", "")
    return Failures(
        entry_id=text["entry"],
        attempts=int(text["attempts"]),
        first_ms=int(text["first_ms"]),
        next_ms=int(text["next_ms"]),
        error=text.get("error", ""),
        status=int(status) if status else None,
    )


class ReceiverLoop:
    """One receiver's delivery loop in one replica; :meth:`step` is one pass."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        receiver: Webhook,
        *,
        consumer: str,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.redis = client
        self.keys = Keys(settings.redis_prefix)
        self.receiver = receiver
        self.consumer = consumer
        self.group = notify_group(receiver.name)
        self.secret = (
            settings.notification_secret.get_secret_value()
            if settings.notification_secret
            else None
        )
        self.timeout_s = settings.notification_timeout_s
        self.policy = policy_of(settings)
        # longer than one attempt plus a blocking read, with margin: a holder renews in time
        self.lease_ms = round(2 * (self.timeout_s * 1000 + BLOCK_MS_MAX)) + 1000
        self.clock = clock or (lambda: server_time_ms(client))
        self.http = httpx.Client()
        self.block_ms = BLOCK_MS_MAX  # how long a step waits for a new event
        self.head: Entry | None = None
        self.prepared = False

    def step(self) -> float:
        """Deliver (or try) the oldest event, or wait for one; returns the seconds to wait
        before the next step. Raises ``redis.RedisError`` (the caller's loop retries); after
        a transient error the next step prepares again (groups, pending entries), as
        :class:`workers.bus.retry.Prepared` does for the other readers."""
        try:
            return self._step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.prepared, self.head = False, None
            if not is_group_missing(exc):
                raise
            log.warning("receiver %s: group missing (Redis restarted empty?)", self.receiver.name)
            return 0.0

    def close(self) -> None:
        """Give the lease up (another replica goes on at once) and close the HTTP client."""
        try:
            release = self.redis.register_script(_RELEASE_LUA)
            release(keys=[self.keys.notify_lease(self.receiver.name)], args=[self.consumer])
        except redis.RedisError as exc:
            log.info("receiver %s: lease not released (%s)", self.receiver.name, exc)
        self.http.close()

    def _lease(self) -> int:
        """Take or renew the receiver's lease: 2 taken now, 1 renewed, 0 another's."""
        lease = self.redis.register_script(_LEASE_LUA)
        key = self.keys.notify_lease(self.receiver.name)
        return int(lease(keys=[key], args=[self.consumer, self.lease_ms]))

    def _step(self) -> float:
        held = self._lease()
        if not held:
            self.prepared, self.head = False, None
            return STEP_MAX_S
        if held == 2 or not self.prepared:
            self._prepare()
        if self.head is None:
            self.head = self._next()
            if self.head is None:
                return 0.0
        entry_id, fields = self.head
        event = self._decode(entry_id, fields)
        if event is None or not event_matches(self.receiver.events, event.kind):
            self._done(entry_id)
            return 0.0
        failures = read_failures(self.redis, self.keys, self.receiver.name)
        if failures is not None and failures.entry_id != entry_id.decode():
            failures = None  # about an event done meanwhile (by a replica that then died)
        wait_ms = 0 if failures is None else failures.next_ms - self.clock()
        if wait_ms > 0:
            return min(wait_ms / 1000, STEP_MAX_S)
        return self._attempt(entry_id, event, failures)

    def _prepare(self) -> None:
        """Create the group if missing; claim what the group had pending (ours now)."""
        start_ms = max(0, server_time_ms(self.redis) - START_BACKLOG_MS)
        ensure_group(self.redis, self.keys.events, self.group, f"{start_ms}-0")
        start: bytes = b"0-0"
        claimed = 0
        for _ in range(1000):
            start, entries = autoclaim(
                self.redis,
                self.keys.events,
                self.group,
                self.consumer,
                min_idle_ms=0,
                count=100,
                start_id=start,
            )
            claimed += len(entries)
            if start == b"0-0":
                break
        if claimed:
            log.info("receiver %s: %s pending event(s) taken over", self.receiver.name, claimed)
        self.prepared, self.head = True, None

    def _next(self) -> Entry | None:
        """The oldest event this replica holds, else the next new one (waits a little)."""
        events, group = self.keys.events, self.group
        pending = read_pending(self.redis, events, group, self.consumer, count=1)
        if pending:
            return pending[0]
        new = read_group(self.redis, events, group, self.consumer, count=1, block_ms=self.block_ms)
        return new[0] if new else None

    def _decode(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Event | None:
        raw = fields.get(MESSAGE_FIELD, b"")
        try:
            return decode_as(raw, Event)
        except DecodeError as exc:
            dead_letter(
                self.redis,
                self.keys,
                origin_stream=self.keys.events,
                entry_id=entry_id,
                raw=raw,
                reason=exc.reason,
            )
            return None

    def _attempt(self, entry_id: bytes, event: Event, failures: Failures | None) -> float:
        """One POST; then delivered, retried later, or given up."""
        name = self.receiver.name
        tried = try_once(
            self.http,
            self.receiver.url,
            event,
            cluster=self.keys.prefix,
            secret=self.secret,
            timeout_s=self.timeout_s,
            entry_id=entry_id.decode(),
            failures=failures,
            policy=self.policy,
            clock=self.clock,
        )
        attempt, answer, state = tried.attempt, tried.answer, tried.state
        if not self._lease():  # taken over while waiting (a stall): the new holder sends it again
            log.warning("receiver %s: lease lost during an attempt at %s", name, event.id)
            self.prepared, self.head = False, None
            return 0.0
        if state is None:
            log.info(
                "receiver %s: event %s delivered (attempt %s, HTTP %s)",
                name,
                event.id,
                attempt,
                answer.status,
            )
            self._done(entry_id, outcome="delivered")
            return 0.0
        if isinstance(state, Failures):
            self._keep(state)
            log.warning(
                "receiver %s: event %s: attempt %s failed (%s); next at %s ms",
                name,
                event.id,
                attempt,
                answer.error,
                state.next_ms,
            )
            return 0.0
        failed = failed_entry(name, event, tried, state, self.clock())
        log.error(
            "receiver %s: event %s given up after %s attempt(s): %s",
            name,
            event.id,
            state.attempts,
            state.error,
        )
        self._done(entry_id, outcome="failed", failed=failed)
        return 0.0

    def _keep(self, state: Failures) -> None:
        pipe = self.redis.pipeline(transaction=True)
        key = self.keys.notify_retry(self.receiver.name)
        pipe.delete(key)
        pipe.hset(
            key,
            mapping={
                "entry": state.entry_id,
                "attempts": state.attempts,
                "first_ms": state.first_ms,
                "next_ms": state.next_ms,
                "error": state.error,
                "status": "" if state.status is None else state.status,
            },
        )
        pipe.hincrby(self.keys.notify_counts, f"{self.receiver.name}:retried", 1)
        pipe.execute()

    def _done(
        self,
        entry_id: bytes,
        *,
        outcome: str | None = None,
        failed: FailedNotification | None = None,
    ) -> None:
        """Acknowledge the event (after keeping it in the failed list, when given) and
        forget its failed attempts, in one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        if failed is not None:
            pipe.xadd(
                self.keys.notifications_failed,
                {MESSAGE_FIELD: encode(failed)},
                maxlen=FAILED_MAXLEN,
                approximate=True,
            )
        ack(self.redis, self.keys.events, self.group, [entry_id], pipeline=pipe)
        if outcome is not None:
            pipe.delete(self.keys.notify_retry(self.receiver.name))
            pipe.hincrby(self.keys.notify_counts, f"{self.receiver.name}:{outcome}", 1)
        pipe.execute()
        self.head = None
