"""Issuing commands and a member processing them, in-process against real Redis and SQL:
execute, idempotence, expiry, dead letters, restarts, abort (scheduled, running, ended,
dead member) and the cancel of an execute not processed yet."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from schemas.codec import decode_as
from schemas.errors import NotFoundError
from schemas.keys import GROUP_COMMANDS, Keys
from schemas.messages import CommandAction, Heartbeat, MemberState, RemoteCommand
from schemas.settings import Settings
from tests.cluster import new_uuid
from tests.inprocess import View
from workers.bus.streams import publish, read_group, server_time_ms
from workers.commands.issue import (
    BadTarget,
    NoReceiver,
    publish_command,
    request_abort,
    request_execute,
)
from workers.node.commands import CommandProcessor
from workers.store import (
    Store,
    create_job,
    finish_execution,
    get_command,
    get_execution,
    insert_command,
    insert_execution,
    list_commands,
    list_executions,
    reroute_command,
    start_execution,
)

KEYS = Keys()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def v(r: redis.Redis) -> View:
    return View(r)


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return Settings(home_dir=tmp_path)


def add_job(store: Store, owner: str, name: str = "job", retry: int = 0) -> str:
    return create_job(
        store,
        project="p",
        group_name="g",
        name=name,
        command=["true"],
        schedule=None,
        modified_by=owner,
        now_ms=now_ms(),
        retry_count=retry,
    ).id


def processor(r: redis.Redis, store: Store, member: str, **kw: object) -> CommandProcessor:
    return CommandProcessor(r, store, KEYS, member_uuid=member, **kw)  # type: ignore[arg-type]


def record(
    r: redis.Redis,
    store: Store,
    target: str,
    *,
    action: str = "execute",
    job_id: str | None = None,
    execution_id: str | None = None,
    expires_in_ms: int = 60_000,
    publish_it: bool = True,
) -> RemoteCommand:
    """A command recorded and published by hand (times on the Redis clock)."""
    at_ms = server_time_ms(r)
    command = RemoteCommand(
        id=new_uuid(),
        action=CommandAction(action),
        target_uuid=target,
        job_id=job_id,
        execution_id=execution_id or (new_uuid() if action == "execute" else None),
        issued_at_ms=at_ms,
        expires_at_ms=at_ms + expires_in_ms,
        issued_by="test",
    )
    insert_command(
        store,
        command_id=command.id,
        action=action,
        target_uuid=target,
        issued_ms=command.issued_at_ms,
        expires_ms=command.expires_at_ms,
        issued_by="test",
        job_id=job_id,
        execution_id=command.execution_id,
    )
    if publish_it:
        publish_command(r, KEYS, command)
    return command


def unacked(r: redis.Redis, member: str) -> int:
    return int(r.xpending(KEYS.commands(member), GROUP_COMMANDS)["pending"])


def test_execute_schedules_the_execution_once_even_when_redelivered(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    m = new_uuid()
    v.beat(m)
    job = add_job(store, m)
    issued = request_execute(r, store, s, job_ref=job, on_uuid=m, issued_by="me")
    c = issued.command
    assert (c.target_uuid, c.job_id, issued.reason) == (m, job, "named with --on")
    assert c.expires_at_ms - c.issued_at_ms == 1_800_000
    assert get_command(store, c.id).status == "pending"
    p = processor(r, store, m)
    (done,) = p.process()
    assert (done.command_id, done.status) == (c.id, "done")
    assert c.execution_id is not None
    e = get_execution(store, c.execution_id)
    assert (e.job_id, e.member_uuid, e.status, e.trigger) == (job, m, "scheduled", "remote")
    row = get_command(store, c.id)
    assert (row.status, row.processed_by) == ("done", m)
    assert row.processed_ms is not None and row.processed_ms >= c.issued_at_ms
    assert unacked(r, m) == 0
    publish(r, KEYS.commands(m), c)  # the same message again
    assert p.process() == []
    assert processor(r, store, m).process() == []  # or after a restart
    assert [x.id for x in list_executions(store, job_id=job)] == [c.execution_id]
    assert r.xlen(KEYS.dead_letters) == 0 and unacked(r, m) == 0


def test_a_remote_run_follows_the_jobs_concurrency_policy(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    """forbid: a run of a job still running elsewhere is recorded skipped, with the reason,
    and the command is done (nothing to retry)."""
    m, other = new_uuid(), new_uuid()
    v.beat(m)
    job = add_job(store, m)  # a new job: forbid
    running = insert_execution(
        store, job_id=job, member_uuid=other, trigger="schedule", fire_ms=1, now_ms=now_ms()
    )
    start_execution(store, running, now_ms=now_ms())
    issued = request_execute(r, store, s, job_ref=job, on_uuid=m, issued_by="me")
    (done,) = processor(r, store, m).process()
    assert issued.command.execution_id is not None
    skipped = get_execution(store, issued.command.execution_id)
    reason = f"concurrency forbid: execution {running} is still running on member {other}"
    assert (skipped.status, skipped.trigger, skipped.reason) == ("skipped", "remote", reason)
    assert done.status == "done" and done.detail.endswith(f"skipped on {m}: {reason}")
    assert get_command(store, issued.command.id).detail == done.detail
    assert get_execution(store, running).status == "running"


def test_an_expired_command_is_recorded_expired_and_does_nothing(
    r: redis.Redis, store: Store
) -> None:
    m = new_uuid()
    job = add_job(store, m)
    late = record(r, store, m, job_id=job, expires_in_ms=-1)
    (done,) = processor(r, store, m).process()
    assert done.status == "expired"
    assert get_command(store, late.id).status == "expired"
    assert list_executions(store, job_id=job) == []


def test_bad_messages_are_dead_lettered_and_acked(r: redis.Redis, store: Store) -> None:
    m = new_uuid()
    stream = KEYS.commands(m)
    r.xadd(stream, {b"m": b"\xc1junk"})
    r.xadd(stream, {b"other": b"field"})
    hb = Heartbeat(uuid=m, name="x", seq=1, started_at_ms=0, sent_at_ms=0)
    publish(r, stream, hb)
    stray = RemoteCommand(
        id="never-recorded",
        action=CommandAction.ABORT,
        target_uuid=m,
        execution_id="e",
        issued_at_ms=0,
        expires_at_ms=10**13,
    )
    publish(r, stream, stray)
    assert processor(r, store, m).process() == []
    reasons = [fields[b"reason"].decode() for _, fields in r.xrange(KEYS.dead_letters)]
    assert len(reasons) == 4
    assert reasons[0].startswith("not msgpack") and "no field 'm'" in reasons[1]
    assert reasons[2] == "expected command, got Heartbeat"
    assert reasons[3] == "command never-recorded is not recorded in the store"
    assert unacked(r, m) == 0


def test_a_command_rerouted_away_is_left_to_its_new_member(r: redis.Redis, store: Store) -> None:
    first, second = new_uuid(), new_uuid()
    job = add_job(store, first)
    c = record(r, store, first, job_id=job)
    assert reroute_command(store, c.id, from_uuid=first, to_uuid=second, detail="test")
    assert processor(r, store, first).process() == []  # its message is acked, nothing done
    assert unacked(r, first) == 0 and list_executions(store, job_id=job) == []
    # the new member never got a message: the store has the command all the same
    (done,) = processor(r, store, second).process()
    assert done.command_id == c.id
    assert c.execution_id is not None
    assert get_execution(store, c.execution_id).member_uuid == second


def test_a_command_recorded_but_never_published_is_processed(r: redis.Redis, store: Store) -> None:
    m = new_uuid()
    job = add_job(store, m)
    c = record(r, store, m, job_id=job, publish_it=False)
    (done,) = processor(r, store, m).process()
    assert done.command_id == c.id and done.status == "done"


def test_entries_delivered_before_a_crash_are_processed_and_acked_after_restart(
    r: redis.Redis, store: Store
) -> None:
    m = new_uuid()
    job = add_job(store, m)
    p = processor(r, store, m)
    assert p.process() == []  # creates the group
    c = record(r, store, m, job_id=job)
    # the member read the entry and died before processing and acking it
    delivered = read_group(r, KEYS.commands(m), GROUP_COMMANDS, m, count=10, block_ms=None)
    assert len(delivered) == 1 and unacked(r, m) == 1
    (done,) = processor(r, store, m).process()
    assert done.command_id == c.id and unacked(r, m) == 0


def test_an_execute_of_a_missing_job_fails_with_the_reason(r: redis.Redis, store: Store) -> None:
    m = new_uuid()
    c = record(r, store, m, job_id="no-such-job")
    (done,) = processor(r, store, m).process()
    assert done.status == "failed"
    row = get_command(store, c.id)
    assert (row.status, row.detail) == ("failed", "job no-such-job does not exist")


def test_abort_of_a_scheduled_execution_keeps_it_from_starting(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    m = new_uuid()
    v.beat(m)
    job = add_job(store, m)
    e = insert_execution(
        store,
        job_id=job,
        member_uuid=m,
        trigger="schedule",
        fire_ms=now_ms() + 60_000,
        now_ms=now_ms(),
    )
    result = request_abort(r, store, s, execution_id=e, issued_by="me")
    assert (result.outcome, result.member_uuid, result.status) == ("sent", m, "scheduled")
    assert get_execution(store, e).status == "scheduled"  # the member decides, not the CLI
    again = request_abort(r, store, s, execution_id=e)
    assert (again.outcome, again.command_id) == ("sent", result.command_id)  # not a second one
    (done,) = processor(r, store, m).process()
    assert (done.status, done.detail) == ("done", "aborted before it started")
    assert get_execution(store, e).status == "aborted"
    assert not start_execution(store, e, now_ms=now_ms(), member_uuid=m)


def test_abort_of_a_running_execution_records_aborted_before_stopping_it(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    m = new_uuid()
    v.beat(m)
    job = add_job(store, m, retry=3)
    e = insert_execution(
        store, job_id=job, member_uuid=m, trigger="schedule", fire_ms=1, now_ms=now_ms()
    )
    assert start_execution(store, e, now_ms=now_ms(), member_uuid=m, rq_job_id=e)
    seen: list[tuple[str, str]] = []

    def stop_job(_client: redis.Redis, rq_job_id: str) -> bool:
        seen.append((rq_job_id, get_execution(store, rq_job_id).status))
        return True

    assert request_abort(r, store, s, execution_id=e).outcome == "sent"
    (done,) = processor(r, store, m, stop_job=stop_job).process()
    assert seen == [(e, "aborted")]
    assert done.detail == "aborted; RQ job stopped"
    # the task, had it still finished, records nothing and creates no retry
    assert not finish_execution(store, e, status="failed", now_ms=now_ms())
    assert [x.id for x in list_executions(store, job_id=job)] == [e]


def test_abort_of_an_ended_or_unknown_execution(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    m = new_uuid()
    v.beat(m)
    job = add_job(store, m)
    e = insert_execution(store, job_id=job, member_uuid=m, trigger="schedule", fire_ms=1, now_ms=1)
    assert finish_execution(store, e, status="succeeded", now_ms=2)
    ended = request_abort(r, store, s, execution_id=e)
    assert (ended.outcome, ended.status, ended.command_id) == ("ended", "succeeded", None)
    assert list_commands(store) == []
    with pytest.raises(NotFoundError):
        request_abort(r, store, s, execution_id="nope")
    # an abort command that finds its execution ended meanwhile says so
    c = record(r, store, m, action="abort", execution_id=e)
    (done,) = processor(r, store, m).process()
    assert (done.command_id, done.detail) == (c.id, "nothing to abort: already succeeded")


def test_abort_on_a_dead_member_is_applied_in_the_store(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    gone = new_uuid()
    v.beat(gone)
    v.to(gone, MemberState.DEAD)
    job = add_job(store, gone)
    e = insert_execution(
        store, job_id=job, member_uuid=gone, trigger="schedule", fire_ms=1, now_ms=1
    )
    assert start_execution(store, e, now_ms=2)
    result = request_abort(r, store, s, execution_id=e)
    assert (result.outcome, result.status, result.command_id) == ("applied", "aborted", None)
    assert f"member {gone} is dead" in result.detail
    assert get_execution(store, e).status == "aborted"
    assert list_commands(store) == [] and r.exists(KEYS.commands(gone)) == 0
    never_heard = new_uuid()
    e2 = insert_execution(
        store, job_id=job, member_uuid=never_heard, trigger="schedule", fire_ms=1, now_ms=1
    )
    unknown = request_abort(r, store, s, execution_id=e2)
    assert unknown.outcome == "applied" and "unknown to the liveness view" in unknown.detail


def test_abort_cancels_an_execute_not_processed_yet(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    m = new_uuid()
    v.beat(m)
    job = add_job(store, m)
    c = request_execute(r, store, s, job_ref=job, on_uuid=m).command
    assert c.execution_id is not None
    result = request_abort(r, store, s, execution_id=c.execution_id, issued_by="me")
    assert (result.outcome, result.command_id, result.status) == ("cancelled", c.id, None)
    assert processor(r, store, m).process() == []
    assert list_executions(store, job_id=job) == []
    row = get_command(store, c.id)
    assert (row.status, row.processed_by) == ("cancelled", "me")
    again = request_abort(r, store, s, execution_id=c.execution_id)
    assert again.outcome == "ended" and "cancelled" in again.detail


def test_run_refuses_dead_and_unknown_targets_and_unknown_jobs(
    r: redis.Redis, store: Store, v: View, s: Settings
) -> None:
    gone = new_uuid()
    v.beat(gone)
    v.to(gone, MemberState.DEAD)
    job = add_job(store, gone)
    with pytest.raises(BadTarget, match=f"member {gone} is dead"):
        request_execute(r, store, s, job_ref=job, on_uuid=gone)
    with pytest.raises(BadTarget, match="unknown to the liveness view"):
        request_execute(r, store, s, job_ref=job, on_uuid=new_uuid())
    with pytest.raises(NotFoundError):
        request_execute(r, store, s, job_ref="p/g/none", on_uuid=gone)
    # policy None, owner dead, nobody else: no receiver
    with pytest.raises(NoReceiver, match="no active, non-passive member may receive it"):
        request_execute(r, store, s, job_ref=job)
    assert list_commands(store) == [] and r.exists(KEYS.commands(gone)) == 0
    late = new_uuid()  # an inactive member may still process: it is accepted
    v.beat(late)
    v.to(late, MemberState.INACTIVE)
    issued = request_execute(r, store, s, job_ref=job, on_uuid=late)
    assert issued.command.target_uuid == late and "inactive" in issued.reason


def test_run_without_on_follows_the_policy(
    r: redis.Redis, store: Store, v: View, tmp_path: Path
) -> None:
    a, b, passive = sorted(new_uuid() for _ in range(3))
    v.beat(a)
    v.beat(b)
    v.beat(passive, passive=True)
    job = add_job(store, passive)
    owner = request_execute(r, store, Settings(home_dir=tmp_path), job_ref=job)
    assert owner.command.target_uuid == passive  # policy None: the owner, passive or not
    rr = Settings(home_dir=tmp_path, remote_execution_policy="roundrobin")
    turns = [request_execute(r, store, rr, job_ref="p/g/job").command.target_uuid for _ in "abcd"]
    assert turns == [a, b, a, b]
    assert int(r.get(KEYS.remote_exec_round_robin) or 0) == 4
    for c in list_commands(store, limit=None):  # each on its target's stream
        stream = r.xrange(KEYS.commands(c.target_uuid))
        assert c.id in {decode_as(fields[b"m"], RemoteCommand).id for _, fields in stream}
