"""The notify worker in-process, against a real Redis and real HTTP receivers (threads of
this process), driven step by step with a moved clock: order, signature, retries on the
schedule, the failed list, a replica taking over, a Redis that lost the group, and one
silent receiver not holding up another."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.codec import decode_as
from schemas.keys import MESSAGE_FIELD, Keys, notify_group
from schemas.messages import Event, FailedNotification
from schemas.settings import Settings
from schemas.settings_webhooks import Webhook
from tests.cluster import wait_for
from tests.notify_receiver import Receiver, SilentReceiver
from tests.test_node_member import Clock  # a clock the test moves (epoch ms)
from workers.bus.streams import server_time_ms
from workers.notify.emit import emit
from workers.notify.failed import list_failed
from workers.notify.receiver import STEP_MAX_S, ReceiverLoop, read_failures
from workers.notify.worker import NotifyWorker

KEYS = Keys()
SECRET = "s3cret-for-the-tests-0123"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def settings(redis_url: str, tmp_path: Path, *hooks: Webhook, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "home_dir": tmp_path,
        "notification_webhooks": hooks,
        "notification_secret": SECRET,
        "notification_timeout_s": 2.0,
        "notification_retry_initial_s": 0.1,
        "notification_retry_max_s": 0.4,
        "notification_retry_horizon_s": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


def hook(url: str, events: str = "member.*,takeover.*", name: str = "ops") -> Webhook:
    return Webhook(name=name, url=url, events=events)  # type: ignore[arg-type]


def event(n: int, kind: str = "member.dead") -> Event:
    return Event(id=f"{kind}:m{n}:{n}", kind=kind, at_ms=1_700_000_000_000 + n, data={"n": n})


def loop_for(r: redis.Redis, s: Settings, clock: Clock, consumer: str = "w1") -> ReceiverLoop:
    loop = ReceiverLoop(r, s, s.notification_webhooks[0], consumer=consumer, clock=clock)
    loop.block_ms = 50  # an idle step waits this long for a new event
    return loop


def step_until(loop: ReceiverLoop, condition: Any, what: str) -> Any:
    def stepped() -> Any:
        loop.step()
        return condition()

    return wait_for(stepped, what=what)


def pending(r: redis.Redis, name: str = "ops") -> int:
    return int(r.xpending(KEYS.events, notify_group(name))["pending"])


def counts(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(KEYS.notify_counts).items()}


def failed_entries(r: redis.Redis) -> list[FailedNotification]:
    return [
        decode_as(f[MESSAGE_FIELD], FailedNotification)
        for _, f in r.xrange(KEYS.notifications_failed)
    ]


def test_events_arrive_in_order_signed_once_each_and_others_are_skipped(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    loop = loop_for(r, s, Clock(server_time_ms(r)))
    loop.step()  # takes the lease, creates the group
    sent = [
        event(1, "member.inactive"),
        event(2, "execution.failed"),
        event(3),
        event(4, "takeover.committed"),
    ]
    for e in sent:
        emit(r, KEYS, e)
    step_until(loop, lambda: len(receiver.requests) == 3 and pending(r) == 0, "3 deliveries")
    loop.step()  # nothing more comes
    got = receiver.requests
    assert [g.event["id"] for g in got] == [sent[0].id, sent[2].id, sent[3].id]
    assert all(g.signed_by(SECRET) and g.attempt == 1 for g in got)
    assert not got[0].signed_by("another-secret-0123456")
    first = got[0]
    assert first.headers["x-qwc-event"] == "member.inactive"
    assert first.headers["idempotency-key"] == first.headers["x-qwc-event-id"] == sent[0].id
    assert first.event == {
        "schema": "qwc.event/1",
        "id": sent[0].id,
        "type": "member.inactive",
        "time": "2023-11-14T22:13:20.001+00:00",
        "time_ms": 1_700_000_000_001,
        "cluster": "qwc",
        "data": {"n": 1},
    }
    assert counts(r) == {"ops:delivered": 3}
    loop.close()


def test_a_failing_receiver_is_retried_on_the_schedule_of_the_moved_clock(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    clock = Clock(1_000_000)
    loop = loop_for(r, s, clock)
    loop.step()
    receiver.statuses.extend([503, 429, 200])
    emit(r, KEYS, event(1))
    step_until(loop, lambda: len(receiver.requests) == 1, "first attempt")
    failures = read_failures(r, KEYS, "ops")
    assert failures is not None
    assert (failures.attempts, failures.first_ms, failures.next_ms) == (1, 1_000_000, 1_000_100)
    assert failures.status == 503 and failures.error.startswith("HTTP 503")
    assert 0 < loop.step() <= 0.1  # not due: waits, sends nothing
    assert len(receiver.requests) == 1
    clock.now_ms = 1_000_100
    step_until(loop, lambda: len(receiver.requests) == 2, "second attempt")
    assert read_failures(r, KEYS, "ops").next_ms == 1_000_300  # type: ignore[union-attr]
    clock.now_ms = 1_000_299
    loop.step()
    assert len(receiver.requests) == 2
    clock.now_ms = 1_000_300
    step_until(loop, lambda: pending(r) == 0, "delivered at the third attempt")
    assert [g.attempt for g in receiver.requests] == [1, 2, 3]
    assert len({g.body for g in receiver.requests}) == 1  # the same bytes each time
    assert read_failures(r, KEYS, "ops") is None
    assert counts(r) == {"ops:retried": 2, "ops:delivered": 1}
    assert failed_entries(r) == []
    loop.close()


def test_after_the_horizon_the_event_is_kept_in_the_failed_list(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    clock = Clock(5_000_000)
    loop = loop_for(r, s, clock)
    loop.step()
    receiver.statuses.extend([500] * 5)
    emit(r, KEYS, event(7, "takeover.committed"))
    emit(r, KEYS, event(8))
    while event(8).id not in receiver.ids():  # every attempt, the clock moved to each
        loop.step()
        failures = read_failures(r, KEYS, "ops")
        if failures is not None:
            clock.now_ms = max(clock.now_ms, failures.next_ms)
    offsets = [5_000_000, 5_000_100, 5_000_300, 5_000_700, 5_001_000]  # the horizon: 1 s
    assert len(receiver.requests) == len(offsets) + 1  # then event 8, delivered (200 after 500s)
    (failed,) = failed_entries(r)
    assert (failed.receiver, failed.event_id, failed.attempts) == (
        "ops",
        event(7, "takeover.committed").id,
        5,
    )
    assert (failed.first_attempt_ms, failed.status, failed.error) == (
        5_000_000,
        500,
        "HTTP 500: answered 500",
    )
    assert failed.body.encode() == receiver.requests[0].body
    assert receiver.ids()[-1] == event(8).id  # the next one went on after it
    (listed,) = list_failed(r, KEYS)
    assert listed["event_type"] == "takeover.committed" and listed["payload"]["data"] == {"n": 7}
    assert counts(r)["ops:failed"] == 1


@pytest.mark.parametrize("status", [400, 404, 301])
def test_a_final_refusal_is_given_up_at_once(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver, status: int
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    loop = loop_for(r, s, Clock(1))
    loop.step()
    receiver.statuses.append(status)
    emit(r, KEYS, event(1))
    step_until(loop, lambda: failed_entries(r), "given up")
    assert len(receiver.requests) == 1 and pending(r) == 0
    assert failed_entries(r)[0].status == status


def test_a_replica_taking_over_goes_on_with_the_same_schedule(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    clock = Clock(1_000_000)
    first, second = loop_for(r, s, clock, "w1"), loop_for(r, s, clock, "w2")
    first.step()
    assert second.step() == STEP_MAX_S  # the lease is w1's: w2 stands by
    receiver.statuses.append(503)
    emit(r, KEYS, event(1))
    step_until(first, lambda: receiver.requests, "w1's attempt")
    second.step()
    assert len(receiver.requests) == 1  # w2 still stands by
    first.close()  # w1 stops (its entry stays pending, its lease is given up)
    second.step()  # w2 takes the lease and w1's pending event
    assert r.xpending_range(KEYS.events, notify_group("ops"), "-", "+", 10)[0]["consumer"] == b"w2"
    assert len(receiver.requests) == 1  # not due yet on the schedule w1 started
    clock.now_ms = 1_000_100
    step_until(second, lambda: pending(r) == 0, "w2 delivers")
    assert [g.attempt for g in receiver.requests] == [1, 2]
    second.close()


def test_a_replica_that_stalled_past_its_lease_leaves_the_event_to_the_new_holder(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    clock = Clock(1_000_000)
    stalled, other = loop_for(r, s, clock, "w1"), loop_for(r, s, clock, "w2")
    stalled.step()
    # while w1 waits for the answer, its lease runs out and w2 takes it
    receiver.on_request = lambda: r.set(KEYS.notify_lease("ops"), "w2", px=60_000)
    emit(r, KEYS, event(1))
    step_until(stalled, lambda: receiver.requests, "w1's attempt")
    receiver.on_request = None
    assert pending(r) == 1 and counts(r) == {}  # w1 leaves the outcome alone
    assert stalled.step() == STEP_MAX_S  # and stands by
    step_until(other, lambda: pending(r) == 0, "w2 sends it again")
    first, again = receiver.requests
    assert first.body == again.body  # a redelivery, the same event
    assert counts(r) == {"ops:delivered": 1}
    other.close()


def test_a_lost_group_is_created_again(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    loop = loop_for(r, s, Clock(1))
    loop.step()
    r.delete(KEYS.events)  # as after a Redis restart without its data
    emit(r, KEYS, event(1), once=False)
    step_until(loop, lambda: receiver.ids() == [event(1).id], "delivered after the loss")
    loop.close()


def test_an_undecodable_entry_goes_to_the_dead_letters(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    s = settings(redis_url, tmp_path, hook(receiver.url))
    loop = loop_for(r, s, Clock(1))
    loop.step()
    r.xadd(KEYS.events, {MESSAGE_FIELD: b"\xc1 not msgpack"})
    emit(r, KEYS, event(2))
    step_until(loop, lambda: receiver.ids() == [event(2).id] and pending(r) == 0, "the good one")
    (entry,) = r.xrange(KEYS.dead_letters)
    assert entry[1][b"stream"] == KEYS.events.encode()
    loop.close()


def test_a_silent_receiver_holds_up_no_other(
    r: redis.Redis, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    silent = SilentReceiver()
    s = settings(
        redis_url,
        tmp_path,
        hook(silent.url, "*", name="silent"),
        hook(receiver.url, "*", name="ops"),
        notification_timeout_s=30.0,
    )
    stop = threading.Event()
    worker = NotifyWorker(redis.Redis.from_url(redis_url), s, consumer="w1", stop=stop)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(
            lambda: r.exists(KEYS.notify_lease("silent"), KEYS.notify_lease("ops")) == 2,
            what="both receivers running",
        )
        for n in range(3):
            emit(r, KEYS, event(n))
        wait_for(lambda: len(receiver.requests) == 3, what="the good receiver's 3 events")
        wait_for(lambda: silent.accepted, what="the silent receiver's connection")
        # its first attempt is still waiting for an answer: nothing recorded about it yet
        assert read_failures(r, KEYS, "silent") is None and pending(r, "silent") == 1
    finally:
        stop.set()
        silent.stop()
        thread.join(40)
    assert not thread.is_alive() and worker.errors == []
