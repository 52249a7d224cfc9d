"""Delivering execution events to the jobs' own webhooks (``workers.jobs.hooks``).

A member puts on an ``execution.*`` event the URLs its job names for that trigger
(``Event.hook_urls``). The notify worker delivers it to each, as it delivers to a
configured receiver — same body, headers, signature, retry schedule and failed list
(:func:`workers.notify.deliver.try_once`) — but one delivery per (event, URL), each on
its own:

* :class:`HookFanout` reads ``{qwc}:events`` in the consumer group
  ``notify:job-hooks`` (a receiver's name has no ``-``: no clash) and turns each event
  with hook URLs into deliveries: ``{qwc}:notify:hook:<delivery id>`` (a hash: the event,
  the URL, the failed attempts so far) due now in ``{qwc}:notify:hooks:due`` (a sorted
  set, score: when its next attempt is due, epoch ms), then acknowledges the event, in
  one transaction. A delivery's id is ``<event id>|<hash of the URL>``, and both writes
  are "only if absent": an event read again (a replica died before acknowledging it)
  adds nothing. A replica takes over what a dead one left pending after
  :data:`FANOUT_IDLE_MS`.
* :class:`HookDeliveries` takes the due deliveries, oldest first, each in a thread of
  its own (at most :data:`HOOK_THREADS` at once per replica, one per URL at a time: a
  silent URL holds one thread and never delays the others). Taking one moves its score
  :data:`claim lease <HookDeliveries.lease_ms>` ahead, so another replica does not take
  it meanwhile, and a replica that dies during an attempt leaves it due again: at least
  once. Delivered: removed. Failed: its failures kept and its score moved to the next
  attempt. Given up: on the failed list (``receiver`` ``job:<trigger>:<URL
  redacted>#<URL hash>``: ``qwc notifications retry`` finds the URL among the job's hooks
  as they are now, :func:`hook_url_of`), and removed.

Unlike a receiver, a URL's deliveries are not kept in order: each event is retried on its
own schedule. Receivers dedupe on the event id as for any event.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import httpx
import redis

from schemas.codec import decode_as, encode
from schemas.errors import DecodeError
from schemas.events import trigger_of
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Event
from schemas.settings import Settings
from schemas.settings_webhooks import redact_webhook_url
from workers.bus.connect import BLOCK_MS_MAX
from workers.bus.retry import is_group_missing
from workers.bus.streams import (
    Entry,
    ack,
    autoclaim,
    dead_letter,
    ensure_group,
    read_group,
    server_time_ms,
)
from workers.notify.deliver import Tried, failed_entry, try_once
from workers.notify.receiver import FAILED_MAXLEN, START_BACKLOG_MS
from workers.notify.schedule import Failures, GiveUp, policy_of

__all__ = [
    "CLOSE_GRACE_S",
    "FANOUT_IDLE_MS",
    "HOOKS_GROUP",
    "HOOK_COUNTS",
    "HOOK_THREADS",
    "HookDeliveries",
    "HookFanout",
    "delivery_id",
    "hook_receiver",
    "hook_url_of",
]

log = logging.getLogger(__name__)

HOOKS_GROUP = "notify:job-hooks"
HOOK_COUNTS = "job-hooks"  # the deliveries' outcomes in {qwc}:notify:counts
HOOK_THREADS = 16  # deliveries under way at once per replica (one per URL)
FANOUT_IDLE_MS = 60_000  # an event pending this long was left by a replica that died
CLOSE_GRACE_S = 3.0  # on stop, how long the attempts under way may still take
_TAKE = 200  # due deliveries read per round trip
_LOOK = 2000  # due deliveries looked at per pass at most (past those whose URL is busy)

# KEYS: due, item. ARGV: id, expected score, new score. The item's fields, or nil when
# another replica took it (its score moved) or it is done.
_CLAIM_LUA = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return false end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return redis.call('HGETALL', KEYS[2])
"""


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def delivery_id(event_id: str, url: str) -> str:
    """The id of the delivery of ``event_id`` to ``url`` (the URL hashed: it may hold a
    token, and ids show in logs)."""
    return f"{event_id}|{_url_hash(url)}"


def hook_receiver(event: Event, url: str) -> str:
    """A hook's name on the failed list: ``job:<trigger>:<URL redacted>#<URL hash>``."""
    trigger = trigger_of(event.kind) or event.kind
    return f"job:{trigger}:{redact_webhook_url(url)}#{_url_hash(url)}"


def hook_url_of(receiver: str, notify: Mapping[str, Sequence[str]]) -> str | None:
    """The URL of the job's hooks ``notify`` that :func:`hook_receiver` named ``receiver``
    (None: not a job hook's name, or the job has that URL for that trigger no more)."""
    kind, _, rest = receiver.partition(":")
    trigger, _, named = rest.partition(":")
    digest = named.rpartition("#")[2]
    if kind != "job" or not digest:
        return None
    return next((u for u in notify.get(trigger, ()) if _url_hash(u) == digest), None)


def _url_key(item_id: str) -> str:
    return item_id.rpartition("|")[2]


class HookFanout:
    """Turns the events read in :data:`HOOKS_GROUP` into deliveries (module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, consumer: str) -> None:
        self.redis = client
        self.keys = keys
        self.consumer = consumer
        self.block_ms = BLOCK_MS_MAX
        self.prepared = False
        self._claimed_ms = 0

    def step(self) -> float:
        """Read and fan out what came (waits a little); returns the seconds to wait. Raises
        ``redis.RedisError`` (the caller's loop retries); a lost group (Redis restarted
        empty) is created again at the next step."""
        try:
            return self._step()
        except redis.ResponseError as exc:
            if not is_group_missing(exc):
                raise
            log.warning("job hooks: group missing (Redis restarted empty?)")
            self.prepared = False
            return 0.0

    def _step(self) -> float:
        now_ms = server_time_ms(self.redis)
        if not self.prepared:
            start_ms = max(0, now_ms - START_BACKLOG_MS)
            ensure_group(self.redis, self.keys.events, HOOKS_GROUP, f"{start_ms}-0")
            self.prepared = True
        entries: list[Entry] = []
        if now_ms - self._claimed_ms >= FANOUT_IDLE_MS // 2:  # what a dead replica left
            _, entries = autoclaim(
                self.redis,
                self.keys.events,
                HOOKS_GROUP,
                self.consumer,
                min_idle_ms=FANOUT_IDLE_MS,
                count=100,
            )
            self._claimed_ms = now_ms
        entries += read_group(
            self.redis,
            self.keys.events,
            HOOKS_GROUP,
            self.consumer,
            count=100,
            block_ms=0 if entries else self.block_ms,
        )
        if entries:
            self._fan_out(entries, now_ms)
        return 0.0

    def _fan_out(self, entries: list[Entry], now_ms: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        added = 0
        for _, fields in entries:
            raw = fields.get(MESSAGE_FIELD, b"")
            try:
                event = decode_as(raw, Event)
            except DecodeError:
                continue  # the receivers' groups dead-letter it; nothing to fan out
            for url in event.hook_urls:
                item = delivery_id(event.id, url)
                key = self.keys.notify_hook(item)
                pipe.hsetnx(key, "event", raw)
                pipe.hsetnx(key, "url", url)
                pipe.zadd(self.keys.notify_hooks_due, {item: now_ms}, nx=True)
                added += 1
        ack(self.redis, self.keys.events, HOOKS_GROUP, [e for e, _ in entries], pipeline=pipe)
        pipe.execute()
        if added:
            log.info("job hooks: %s deliveries from %s event(s)", added, len(entries))


class HookDeliveries:
    """Delivers the due deliveries to the jobs' URLs (module docstring). :meth:`step` is
    one pass; :meth:`close` waits for the attempts under way."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        clock: Callable[[], int] | None = None,
        threads: int = HOOK_THREADS,
    ) -> None:
        self.redis = client
        self.keys = Keys(settings.redis_prefix)
        secret = settings.notification_secret
        self.secret = secret.get_secret_value() if secret else None
        self.timeout_s = settings.notification_timeout_s
        self.policy = policy_of(settings)
        # one attempt takes at most about 2 x the timeout (deliver.post); margin on top
        self.lease_ms = round(4 * self.timeout_s * 1000) + 5000
        self.clock = clock or (lambda: server_time_ms(client))
        self.http = httpx.Client()
        self.threads = threads
        self._running: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # URL keys with an attempt under way here
        self.wake = threading.Event()

    def step(self) -> float:
        """Start the due deliveries whose URL is free, oldest first (looking at most
        :data:`_LOOK` of them); returns the seconds until the next is due (at most
        ``BLOCK_MS_MAX``; :attr:`wake` is set when a thread is free again)."""
        self.wake.clear()
        now_ms = self.clock()
        with self._lock:
            busy = set(self._busy)
        for offset in range(0, _LOOK, _TAKE):
            if len(busy) >= self.threads:
                break
            due = cast(
                list[tuple[bytes, float]],
                self.redis.zrangebyscore(
                    self.keys.notify_hooks_due,
                    "-inf",
                    now_ms,
                    start=offset,
                    num=_TAKE,
                    withscores=True,
                ),
            )
            for raw_id, score in due:
                item, url_key = raw_id.decode(), _url_key(raw_id.decode())
                if url_key in busy or len(busy) >= self.threads:
                    continue
                fields = self._claim(item, score, now_ms)
                if fields is None:
                    continue
                busy.add(url_key)
                # daemon: one still waiting on a silent URL does not hold the exit up (the
                # delivery is due again after its lease)
                thread = threading.Thread(
                    target=self._deliver, args=(item, fields), name="job-hook", daemon=True
                )
                with self._lock:
                    self._busy.add(url_key)
                    self._running.add(thread)
                thread.start()
            if len(due) < _TAKE:
                break
        following = cast(
            list[tuple[bytes, float]],
            self.redis.zrangebyscore(
                self.keys.notify_hooks_due, f"({now_ms}", "+inf", start=0, num=1, withscores=True
            ),
        )
        wait_s = BLOCK_MS_MAX / 1000
        if following:
            wait_s = min(wait_s, (following[0][1] - now_ms) / 1000)
        return max(0.0, wait_s)

    def close(self, timeout_s: float = CLOSE_GRACE_S) -> None:
        """Wait at most ``timeout_s`` for the attempts under way; the others are left to
        their lease (due again later)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in running):
            self.http.close()

    def _claim(self, item: str, score: float, now_ms: int) -> dict[str, bytes] | None:
        claim = self.redis.register_script(_CLAIM_LUA)
        keys = [self.keys.notify_hooks_due, self.keys.notify_hook(item)]
        reply = claim(keys=keys, args=[item, repr(score), now_ms + self.lease_ms])
        if not reply:
            return None
        pairs = cast(list[bytes], reply)
        fields = {pairs[i].decode(): pairs[i + 1] for i in range(0, len(pairs), 2)}
        if "event" not in fields or "url" not in fields:  # half-written: drop it
            self.redis.zrem(self.keys.notify_hooks_due, item)
            return None
        return fields

    def _deliver(self, item: str, fields: dict[str, bytes]) -> None:
        try:
            self._attempt(item, fields)
        except Exception:
            log.exception("job hook delivery %s: attempt failed (it is due again later)", item)
        finally:
            with self._lock:
                self._busy.discard(_url_key(item))
                self._running.discard(threading.current_thread())
            self.wake.set()

    def _attempt(self, item: str, fields: dict[str, bytes]) -> None:
        url = fields["url"].decode()
        try:
            event = decode_as(fields["event"], Event)
        except DecodeError as exc:
            dead_letter(
                self.redis,
                self.keys,
                origin_stream=self.keys.notify_hooks_due,
                entry_id=item.encode(),
                raw=fields["event"],
                reason=exc.reason,
            )
            self._finish(item, None)
            return
        tried = try_once(
            self.http,
            url,
            event,
            cluster=self.keys.prefix,
            secret=self.secret,
            timeout_s=self.timeout_s,
            entry_id=item,
            failures=_failures(item, fields),
            policy=self.policy,
            clock=self.clock,
        )
        where = f"job hook {hook_receiver(event, url)}"
        state = tried.state
        if state is None:
            log.info("%s: event %s delivered (attempt %s)", where, event.id, tried.attempt)
            self._finish(item, "delivered")
        elif isinstance(state, Failures):
            log.warning(
                "%s: event %s: attempt %s failed (%s); next at %s ms",
                where,
                event.id,
                tried.attempt,
                state.error,
                state.next_ms,
            )
            self._keep(item, state)
        else:
            log.error(
                "%s: event %s given up after %s attempt(s): %s",
                where,
                event.id,
                state.attempts,
                state.error,
            )
            self._finish(item, "failed", self._failed(event, url, tried, state))

    def _failed(self, event: Event, url: str, tried: Tried, state: GiveUp) -> bytes:
        return encode(failed_entry(hook_receiver(event, url), event, tried, state, self.clock()))

    def _keep(self, item: str, state: Failures) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.keys.notify_hook(item),
            mapping={
                "attempts": state.attempts,
                "first_ms": state.first_ms,
                "error": state.error,
                "status": "" if state.status is None else state.status,
            },
        )
        pipe.zadd(self.keys.notify_hooks_due, {item: state.next_ms}, xx=True)
        pipe.hincrby(self.keys.notify_counts, f"{HOOK_COUNTS}:retried", 1)
        pipe.execute()

    def _finish(self, item: str, outcome: str | None, failed: bytes | None = None) -> None:
        pipe = self.redis.pipeline(transaction=True)
        if failed is not None:
            pipe.xadd(
                self.keys.notifications_failed,
                {MESSAGE_FIELD: failed},
                maxlen=FAILED_MAXLEN,
                approximate=True,
            )
        pipe.zrem(self.keys.notify_hooks_due, item)
        pipe.delete(self.keys.notify_hook(item))
        if outcome is not None:
            pipe.hincrby(self.keys.notify_counts, f"{HOOK_COUNTS}:{outcome}", 1)
        pipe.execute()


def _failures(item: str, fields: dict[str, bytes]) -> Failures | None:
    """The failed attempts kept in a delivery's hash (None: none yet)."""
    if "attempts" not in fields:
        return None
    status = fields.get("status", b"").decode()
    return Failures(
        entry_id=item,
        attempts=int(fields["attempts"]),
        first_ms=int(fields["first_ms"]),
        next_ms=0,
        error=fields.get("error", b"").decode(),
        status=int(status) if status else None,
    )
