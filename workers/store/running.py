"""A member's pool path in the store: start a batch of executions in one fenced statement,
ask which are still running on it, and count what runs and waits on each member.

Every function is one statement (or one transaction of two), whatever the batch size:
the pool's cost per execution stays flat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, and_, bindparam, case, func, or_, select

from schemas.tables import executions, scheduled_jobs
from workers.store._db import Db, by_ids_only, dialect_of, one_statement, reading, writing

__all__ = [
    "Backlog",
    "Finish",
    "StartedExecution",
    "count_backlog",
    "ended_at",
    "finish_executions",
    "running_here",
    "start_executions",
]

_e, _j = executions, scheduled_jobs


@dataclass(frozen=True)
class StartedExecution:
    """An execution just moved ``scheduled`` -> ``running`` on a member, with what its run
    needs from its job: what it runs (``executor`` with ``command`` or ``executor_spec``,
    as in :class:`workers.store.JobRow`), its timeout (s; None: none) and the retry
    settings; and what its events tell (``project``, ``group_name`` and ``name`` of its
    job, and the job's webhooks ``notify``: trigger -> URLs). Times are epoch ms."""

    id: str
    job_id: str
    member_uuid: str
    attempt: int
    retry_of: str | None
    trigger: str
    fire_ms: int
    started_ms: int
    command: tuple[str, ...]
    retry_count: int
    retry_delay_s: float
    executor: str = "command"
    executor_spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timeout_s: float | None = None
    project: str = ""
    group_name: str = ""
    name: str = ""
    notify: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, row: RowMapping) -> StartedExecution:
        """Build from a row of :func:`start_executions`' query."""
        values = dict(row)
        values["command"] = tuple(values["command"])
        values["retry_delay_s"] = float(values["retry_delay_s"])
        values["notify"] = dict(values.get("notify") or {})
        if values["timeout_s"] is not None:
            values["timeout_s"] = float(values["timeout_s"])
        return cls(**values)


# Built once: the start path runs them for every batch (an expanding IN of the ids).
_START = (
    _e.update()
    .where(_e.c.id.in_(bindparam("ids", expanding=True)))
    .where(by_ids_only(_e.c.member_uuid) == bindparam("member"))
    .where(by_ids_only(_e.c.status) == "scheduled")
    .values(status="running", started_ms=bindparam("now"), rq_job_id=_e.c.id)
    .returning(_e.c.id)
)
_STARTED = (
    select(
        _e.c.id,
        _e.c.job_id,
        _e.c.member_uuid,
        _e.c.attempt,
        _e.c.retry_of,
        _e.c.trigger,
        _e.c.fire_ms,
        _e.c.started_ms,
        _j.c.command,
        _j.c.retry_count,
        _j.c.retry_delay_s,
        _j.c.executor,
        _j.c.executor_spec,
        _j.c.timeout_s,
        _j.c.project,
        _j.c.group_name,
        _j.c.name,
        _j.c.notify,
    )
    .join(_j, _j.c.id == _e.c.job_id)
    .where(_e.c.id.in_(bindparam("ids", expanding=True)))
)


# PostgreSQL: the same start in ONE statement, the jobs' columns RETURNING from the UPDATE's
# FROM (one round trip and one statement less per consumer pass). SQLite's RETURNING cannot
# name another table, so there the start is the UPDATE, then the SELECT, in one transaction.
_START_JOINED = (
    _e.update()
    .where(_e.c.id.in_(bindparam("ids", expanding=True)))
    .where(by_ids_only(_e.c.member_uuid) == bindparam("member"))
    .where(by_ids_only(_e.c.status) == "scheduled", _j.c.id == _e.c.job_id)
    .values(status="running", started_ms=bindparam("now"), rq_job_id=_e.c.id)
    .returning(*_STARTED.selected_columns)
)


def start_executions(
    db: Db, execution_ids: Sequence[str], *, member_uuid: str, now_ms: int
) -> list[StartedExecution]:
    """Move the executions ``execution_ids`` that are still ``scheduled`` on ``member_uuid``
    to ``running`` (started at ``now_ms``, RQ job id = execution id) in one conditional
    UPDATE — the start fence: one aborted, or moved to another member meanwhile, does not
    start — and return those it started, in the order of ``execution_ids``."""
    if not execution_ids:
        return []
    params = {"ids": list(execution_ids), "member": member_uuid, "now": now_ms}
    if dialect_of(db) == "postgresql":
        with one_statement(db) as conn:
            rows = conn.execute(_START_JOINED, params).mappings()
            by_id = {r["id"]: StartedExecution.from_mapping(r) for r in rows}
    else:
        with writing(db) as conn:
            started = list(conn.execute(_START, params).scalars())
            if not started:
                return []
            rows = conn.execute(_STARTED, {"ids": started}).mappings()
            by_id = {r["id"]: StartedExecution.from_mapping(r) for r in rows}
    return [by_id[i] for i in execution_ids if i in by_id]


@dataclass(frozen=True)
class Finish:
    """A final status for an execution, with its exit code, its output (bounded by the
    member) and why, in words (None: nothing to say); ``ended_ms``: when it ended (epoch
    ms; None: when it is written)."""

    id: str
    status: str
    exit_code: int | None
    output: str | None
    reason: str | None = None
    ended_ms: int | None = None


# Built once (the recorder runs it for every batch): executemany, one row per finish.
_FINISH = (
    _e.update()
    .where(_e.c.id == bindparam("f_id"))
    .where(or_(_e.c.status == "scheduled", _e.c.status == "running"))  # no IN: executemany
    .values(
        status=bindparam("f_status"),
        ended_ms=bindparam("f_ended_ms"),
        exit_code=bindparam("f_exit_code"),
        output=bindparam("f_output"),
        reason=bindparam("f_reason"),
    )
)


def finish_executions(db: Db, finishes: Sequence[Finish], *, now_ms: int) -> int:
    """Record ``finishes`` (each ended at its ``ended_ms``, or at ``now_ms``) with ONE
    conditional UPDATE run for all of them (executemany): each only while its execution is
    still ``scheduled`` or ``running``. Returns how many changed (a driver may report -1:
    unknown). The caller validates the statuses; a retry, which needs to know that its
    execution changed, goes through :func:`workers.store.finish_execution` instead."""
    if not finishes:
        return 0
    rows = [
        {
            "f_id": f.id,
            "f_status": f.status,
            "f_ended_ms": now_ms if f.ended_ms is None else f.ended_ms,
            "f_exit_code": f.exit_code,
            "f_output": f.output,
            "f_reason": f.reason,
        }
        for f in finishes
    ]
    with writing(db) as conn:
        changed: int = conn.execute(_FINISH, rows).rowcount
    return changed


def ended_at(db: Db, ends: Mapping[str, tuple[str, int]]) -> set[str]:
    """Of the executions ``ends`` names (id -> (status, ended_ms)), those that have that
    status and ended at that time: which of a batch of :func:`finish_executions` were
    written by it (when its count says some were not)."""
    if not ends:
        return set()
    stmt = select(_e.c.id, _e.c.status, _e.c.ended_ms).where(_e.c.id.in_(list(ends)))
    with reading(db) as conn:
        return {i for i, s, at in conn.execute(stmt).all() if ends[i] == (s, at)}


def running_here(db: Db, member_uuid: str, execution_ids: Collection[str]) -> set[str]:
    """The executions among ``execution_ids`` that are ``running`` on ``member_uuid``."""
    if not execution_ids:
        return set()
    stmt = select(_e.c.id).where(
        _e.c.id.in_(list(execution_ids)),
        by_ids_only(_e.c.member_uuid) == member_uuid,
        by_ids_only(_e.c.status) == "running",
    )
    with reading(db) as conn:
        return set(conn.execute(stmt).scalars())


@dataclass(frozen=True)
class Backlog:
    """A member's executions: ``running``, and ``waiting`` (``scheduled`` and due: its
    fire time passed, not started yet — queued on the member, or not even queued)."""

    running: int = 0
    waiting: int = 0


def count_backlog(db: Db, *, now_ms: int) -> dict[str, Backlog]:
    """:class:`Backlog` of every member that has any, at ``now_ms`` (epoch ms); one grouped
    query. A retry not due yet (``fire_ms`` in the future) is not waiting."""
    waiting = and_(_e.c.status == "scheduled", _e.c.fire_ms <= now_ms)
    stmt = (
        select(
            _e.c.member_uuid,
            func.sum(case((_e.c.status == "running", 1), else_=0)),
            func.sum(case((waiting, 1), else_=0)),
        )
        .where(_e.c.status.in_(["running", "scheduled"]))
        .group_by(_e.c.member_uuid)
    )
    with reading(db) as conn:
        counts = {m: Backlog(int(r or 0), int(w or 0)) for m, r, w in conn.execute(stmt)}
    return {m: b for m, b in counts.items() if b.running or b.waiting}
