"""Where a draining member retries what did not finish: the liveness view's members, or —
when it cannot read the view (Redis down, or a member's Redis user, which may not read it:
docs/operations.md "Securing Redis") — the members the store recorded."""

from __future__ import annotations

import redis

from schemas.keys import Keys
from schemas.messages import MemberState
from workers.node.node import drain_destinations
from workers.recovery.startup import DRAIN_REASON, recover_own
from workers.store import (
    Store,
    create_job,
    get_execution,
    insert_execution,
    list_executions,
    record_member_state,
    start_execution,
)

ME = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"
RESTING = "cccccccc-0000-4000-8000-000000000003"
GONE = "dddddddd-0000-4000-8000-000000000004"


def test_without_the_view_a_drain_retries_on_an_active_member_the_store_recorded(
    store: Store,
) -> None:
    for uuid, state, passive in [
        (ME, "active", True),
        (OTHER, "active", False),
        (RESTING, "active", True),
        (GONE, "dead", False),
    ]:
        record_member_state(
            store, uuid=uuid, name=uuid[:4], state=state, last_seen_ms=5, changed_ms=5,
            passive=passive,
        )  # fmt: skip
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        found = drain_destinations(unreachable, Keys(), store, member_uuid=ME)
    finally:
        unreachable.close()
    assert {c.uuid: (c.state, c.passive) for c in found} == {
        ME: (MemberState.ACTIVE, True),
        OTHER: (MemberState.ACTIVE, False),
        RESTING: (MemberState.ACTIVE, True),
        GONE: (MemberState.DEAD, False),
    }
    job = create_job(
        store, project="p", group_name="", name="long", command=["sleep", "9"], schedule=None,
        modified_by=ME, now_ms=1, retry_count=1,
    ).id  # fmt: skip
    running = insert_execution(
        store, job_id=job, member_uuid=ME, trigger="manual", fire_ms=10, now_ms=10
    )
    start_execution(store, running, now_ms=11)
    recover_own(
        store, member_uuid=ME, members=found, policy="drain", now_ms=20, reason=DRAIN_REASON
    )
    assert get_execution(store, running).reason == DRAIN_REASON
    (retry,) = list_executions(store, retry_of=running)
    assert (retry.member_uuid, retry.attempt) == (OTHER, 2)
