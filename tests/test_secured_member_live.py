"""A locked-down member end to end: a real ``qwc node`` with exactly the two Redis users
docs/operations.md ("Securing Redis") gives it, and signed heartbeats, beside a liveness
worker (the default user) that has the secret. The member turns active (its signed
heartbeats believed), runs a remote execution through RQ, and its user is refused what a
member has no business doing; a forged unsigned heartbeat is dead-lettered."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from tests.cluster import Cluster, new_uuid, wait_for
from tests.test_takeover_live import open_test_store
from workers.liveness.view import read_snapshot
from workers.store import create_job, list_executions

pytestmark = pytest.mark.processes

KEYS = Keys()
DOC = Path(__file__).parent.parent / "docs" / "operations.md"
SECRET = "the-heartbeat-secret-" + "x" * 11


def documented_acl() -> list[str]:
    """The ``ACL SETUSER`` lines of the "Securing Redis" section."""
    lines = re.findall(r"^ACL SETUSER .*$", DOC.read_text(), re.MULTILINE)
    assert [line.split()[2] for line in lines] == ["qwc-node-<uuid>", "qwc-rq"]
    return lines


def with_user(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


@pytest.fixture
def users(cluster: Cluster) -> Iterator[tuple[str, str, str]]:
    """(member uuid, its user, password), created from the documented lines; deleted after."""
    member, password = new_uuid(), secrets.token_hex(8)
    admin = cluster.client()
    names = []
    try:
        for line in documented_acl():
            words = line.replace("<uuid>", member).replace("<password>", password).split()
            admin.execute_command(*words)
            names.append(words[2])
        yield member, names[0], password
    finally:
        if names:
            admin.acl_deluser(*names)
        admin.close()


def test_a_member_with_the_documented_acl_and_a_secret(
    cluster: Cluster, users: tuple[str, str, str]
) -> None:
    member, user, password = users
    cluster.extra_env.update(
        QWC_CLUSTERMODE_HEARTBEAT_SECRET=SECRET, QWC_CLUSTERMODE_REMOTEEXEC_PROCESS_INTERVAL="0.2"
    )
    cluster.start("worker", "liveness")
    node_env = {
        "QWC_REDIS_URL": with_user(cluster.redis_url, user, password),
        "QWC_RQ_REDIS_URL": with_user(cluster.redis_url, "qwc-rq", password),
    }
    cluster.extra_env.update(node_env)
    cluster.node("locked", member)
    for name in node_env:
        del cluster.extra_env[name]
    r = cluster.client()
    wait_for(
        lambda: (
            (s := read_snapshot(r, KEYS).states.get(member)) is not None and s.value == "active"
        ),
        timeout_s=20,
        what="the member active on signed heartbeats",
    )
    phantom = new_uuid()
    forged = Heartbeat(uuid=phantom, name="phantom", seq=1, started_at_ms=1, sent_at_ms=1)
    forged_id = r.xadd(KEYS.heartbeats, {MESSAGE_FIELD: encode(forged)})

    store = open_test_store(cluster)
    try:
        job = create_job(
            store,
            project="p",
            group_name="g",
            name="j",
            command=["true"],
            schedule=None,
            modified_by=member,
            now_ms=time.time_ns() // 1_000_000,
        ).id
        cluster.run("run", job, "--on", member)
        wait_for(
            lambda: [e.status for e in list_executions(store, job_id=job)] == ["succeeded"],
            timeout_s=20,
            what="the remote execution succeeded on RQ",
        )
    finally:
        store.close()
    letters = {f[b"id"]: f[b"reason"] for _, f in r.xrange(KEYS.dead_letters)}
    assert b"unsigned heartbeat" in letters[forged_id]
    assert phantom not in read_snapshot(r, KEYS).states

    locked = redis.Redis.from_url(node_env["QWC_REDIS_URL"])
    other = new_uuid()
    refused = [
        lambda: locked.xadd(KEYS.membership, {MESSAGE_FIELD: b"x"}),
        lambda: locked.xrange(KEYS.heartbeats),
        lambda: locked.xdel(KEYS.heartbeats, forged_id),
        lambda: locked.execute_command("XSETID", KEYS.heartbeats, "1-0"),
        lambda: locked.delete(KEYS.heartbeats),
        lambda: locked.hset(KEYS.view_state, member, "active"),
        lambda: locked.xgroup_create(KEYS.commands(other), "commands", mkstream=True),
    ]
    try:
        for command in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                command()
    finally:
        locked.close()
