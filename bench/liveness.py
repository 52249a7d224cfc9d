"""Heartbeats processed per second by one liveness worker, beside the floor.

The floor is a bare ``XREADGROUP COUNT 1000`` + ``XACK`` loop on the same server with the
same client, over the same number of entries. Target: the worker reaches >= 0.5 of it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from producers.heartbeat import HEARTBEATS_MAXLEN
from schemas.codec import encode
from schemas.keys import GROUP_LIVENESS, MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from schemas.settings import Settings
from workers.bus.connect import connect
from workers.bus.embedded import EmbeddedRedis
from workers.liveness.worker import LivenessWorker
from workers.store import open_store


def add_parser(sub: Any) -> None:
    p = sub.add_parser("liveness", help=__doc__.splitlines()[0])
    p.add_argument("--redis-url", default=None, help="default: an embedded server in a temp dir")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3, help="best of N rounds for each side")
    p.set_defaults(run=run)


def _fill(r: redis.Redis, stream: str, members: list[str], entries: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(entries):
        m = members[i % len(members)]
        hb = Heartbeat(uuid=m, name=m[:8], seq=i, started_at_ms=0, sent_at_ms=0)
        pipe.xadd(stream, {MESSAGE_FIELD: encode(hb)}, maxlen=max(entries, HEARTBEATS_MAXLEN))
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def _floor(r: redis.Redis, stream: str) -> float:
    r.xgroup_create(stream, "floor", id="0")
    t0 = time.perf_counter()
    n = 0
    while True:
        got = r.xreadgroup("floor", "c", {stream: ">"}, count=1000)
        if not got or not got[0][1]:
            break
        ids = [e[0] for e in got[0][1]]
        r.xack(stream, "floor", *ids)
        n += len(ids)
    return n / (time.perf_counter() - t0)


def _worker(r: redis.Redis, settings: Settings, members: list[str], entries: int) -> float:
    """Steady state: every member is already known and active; time ``entries`` heartbeats
    (each repeating its member's content, close together: no watch score moves)."""
    store = open_store(settings)
    w = LivenessWorker(r, store, settings, consumer="bench")
    keys = Keys(settings.redis_prefix)
    w.prepare()
    _fill(r, keys.heartbeats, members, len(members))  # first sight of each member, not timed
    _drain(r, keys, w)
    _fill(r, keys.heartbeats, members, entries)
    t0 = time.perf_counter()
    _drain(r, keys, w)
    elapsed = time.perf_counter() - t0
    store.close()
    return entries / elapsed


def _drain(r: redis.Redis, keys: Keys, w: LivenessWorker) -> None:
    while r.xpending(keys.heartbeats, GROUP_LIVENESS)["pending"] or _unread(r, keys):
        w.step()


def _unread(r: redis.Redis, keys: Keys) -> bool:
    """Entries the group has not been given yet (Redis 6.2 has no "lag" in XINFO GROUPS)."""
    last = r.xinfo_stream(keys.heartbeats)["last-generated-id"]
    groups = r.xinfo_groups(keys.heartbeats)
    return any(
        g["last-delivered-id"] != last for g in groups if g["name"] == GROUP_LIVENESS.encode()
    )


def _clear(r: redis.Redis, prefix: str) -> None:
    """Delete this run's keys (and nothing else)."""
    for key in r.scan_iter(match=f"{{{prefix}}}:*", count=1000):
        r.delete(key)


def run(args: argparse.Namespace) -> int:
    members = [str(uuid.uuid4()) for _ in range(args.members)]
    with tempfile.TemporaryDirectory(prefix="qwc-bench-") as tmp:
        home = Path(tmp)
        prefix = f"qwc-bench-{uuid.uuid4().hex[:8]}"  # its own keys: a given server is not flushed
        settings = Settings(redis_url=args.redis_url, home_dir=home, redis_prefix=prefix)
        r = connect(settings)
        keys = Keys(settings.redis_prefix)
        floors, workers = [], []
        for _ in range(args.rounds):
            _clear(r, prefix)
            _fill(r, keys.heartbeats, members, args.entries)
            floors.append(_floor(r, keys.heartbeats))
            _clear(r, prefix)
            workers.append(_worker(r, settings, members, args.entries))
        floor, worker = max(floors), max(workers)
        print(f"server: {r.info('server')['redis_version']} at {settings.redis_url or 'embedded'}")
        print(f"entries: {args.entries} from {args.members} members, best of {args.rounds}")
        print(f"floor  (XREADGROUP COUNT 1000 + XACK): {floor:12,.0f} entries/s")
        print(f"worker (liveness, decode+view+ack)  : {worker:12,.0f} heartbeats/s")
        print(f"ratio worker/floor: {worker / floor:.2f}  (target >= 0.50)")
        _clear(r, prefix)
        r.close()
        if args.redis_url is None:
            EmbeddedRedis(home).stop()
    return 0
