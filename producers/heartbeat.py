"""The heartbeat producer a member embeds: hand it a Redis client, start it, stop it.

It waits ``delay_s`` after :meth:`HeartbeatProducer.start`, then publishes a
:class:`schemas.messages.Heartbeat` every ``interval_s`` on the heartbeats stream, on a
fixed cadence (no drift). It never raises into its host: a Redis outage is logged once when
it starts and once when it ends, and the producer keeps trying at every interval.
All public methods are thread-safe.

Given a ``secret`` (``qwcontrol.clusterMode.heartbeat.secret``), each heartbeat is signed:
the entry carries the HMAC-SHA256 of the encoded message beside it
(:mod:`schemas.signing`), and liveness workers that share the secret refuse heartbeats
without a valid one. Redis always chooses the entry id (``XADD … *``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis
from redis.typing import EncodableT, FieldT

from schemas import __version__
from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, SIGNATURE_FIELD, Keys
from schemas.messages import Heartbeat, canonical_uuid
from schemas.signing import sign

__all__ = ["HEARTBEATS_MAXLEN", "HeartbeatProducer"]

log = logging.getLogger(__name__)

HEARTBEATS_MAXLEN = 100_000


class HeartbeatProducer:
    """Publishes a member's heartbeats from a daemon thread.

    ``clock`` returns the member's wall clock in seconds; it is only sent as ``sent_at_ms``
    for diagnosis (liveness uses the Redis server's clock). ``secret`` (text or bytes;
    None: unsigned) signs every heartbeat; it is never logged.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        uuid: str,
        name: str,
        interval_s: float,
        delay_s: float = 0.0,
        keys: Keys | None = None,
        tags: Iterable[str] = (),
        passive: bool = False,
        version: str = __version__,
        clock: Callable[[], float] = time.time,
        secret: str | bytes | None = None,
    ) -> None:
        if interval_s <= 0 or delay_s < 0:
            raise ValueError("need interval_s > 0 and delay_s >= 0")
        self._redis = client
        self._keys = keys or Keys()
        self._uuid = canonical_uuid(uuid)
        self._name = name
        self._interval_s = interval_s
        self._delay_s = delay_s
        self._tags = tuple(tags)
        self._version = version
        self._clock = clock
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._started_at_ms = int(clock() * 1000)
        self._lock = threading.Lock()  # guards the fields below
        self._send_lock = threading.Lock()  # one beat at a time: stream order == seq order
        self._passive = passive
        self._running: tuple[str, ...] = ()
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def uuid(self) -> str:
        return self._uuid

    def set_running(self, execution_ids: Iterable[str]) -> None:
        """Executions running on the member now; sent with the next heartbeat."""
        with self._lock:
            self._running = tuple(execution_ids)

    def set_passive(self, passive: bool) -> None:
        """A passive member is alive but never receives taken-over jobs or retries."""
        with self._lock:
            self._passive = passive

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            # A fresh event per thread: a thread that outlived stop()'s join can never be
            # revived by a later start(), nor can a racing stop() end the new one.
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stop,),
                name=f"heartbeat-{self._uuid[:8]}",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop publishing and wait up to ``timeout_s`` for the thread to end (idempotent)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def beat(self) -> bytes | None:
        """Publish one heartbeat now. Returns its stream id, or None if Redis refused it.

        Errors other than ``redis.RedisError`` (a broken client) propagate to the caller.
        """
        with self._send_lock:
            return self._send(self._next_message())

    def _next_message(self) -> Heartbeat:
        with self._lock:
            self._seq += 1
            return Heartbeat(
                uuid=self._uuid,
                name=self._name,
                seq=self._seq,
                started_at_ms=self._started_at_ms,
                sent_at_ms=int(self._clock() * 1000),
                tags=self._tags,
                running=self._running,
                passive=self._passive,
                version=self._version,
            )

    def _send(self, message: Heartbeat) -> bytes | None:
        payload = encode(message)
        fields: dict[FieldT, EncodableT] = {MESSAGE_FIELD: payload}
        if self._secret is not None:
            fields[SIGNATURE_FIELD] = sign(self._secret, payload)
        try:
            entry_id = self._redis.xadd(
                self._keys.heartbeats,
                fields,
                maxlen=HEARTBEATS_MAXLEN,
                approximate=True,
            )
        except redis.RedisError as exc:
            if not self._failing:
                log.warning("member %s: heartbeat not sent (%s); will keep trying", self._uuid, exc)
            self._failing = True
            return None
        if self._failing:
            log.warning("member %s: heartbeats flowing again (seq %s)", self._uuid, message.seq)
            self._failing = False
        return entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()

    def _run(self, stop: threading.Event) -> None:
        if stop.wait(self._delay_s):
            return
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                self.beat()
            except Exception:  # never crash the host; keep the cadence
                log.exception("member %s: heartbeat failed unexpectedly", self._uuid)
            next_at += self._interval_s
            now = time.monotonic()
            if next_at < now:  # we fell behind (host paused): skip missed beats
                next_at = now + self._interval_s
            stop.wait(next_at - now)
