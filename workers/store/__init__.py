"""The SQL store shared by every member and worker (SQLAlchemy 2 Core, Alembic).

``open_store(settings)`` gives a ``Store``; the functions below take a ``Store``, an
``Engine`` or a ``Connection`` (then they run in the caller's transaction, so several of
them can be combined atomically: ``with store.begin() as conn: ...``). Times are epoch
milliseconds passed in by the caller (``now_ms``); the store never reads a clock.

Modules: ``engine`` (engines, ``Store``), ``migrate`` (Alembic upgrade), ``jobs`` and
``job_reads``, ``job_delete`` (a deleted job's row stays marked until retention), ``fence``
(``claim_fire``/``claim_fires``/``record_fire``), ``admission`` (new executions admitted by
their job's concurrency policy; ``concurrency``: its pure decision), ``executions``,
``members``, ``audit``, ``takeover`` (``commit_takeover``: one transaction moving a
member's jobs), ``recovery`` (``commit_recovery``: one transaction marking a dead member's
executions and inserting their retries), ``running`` (a member's pool: batched start,
still running here, what runs and waits per member), ``commands`` (the record of remote
commands), ``report`` (double and missed fires counted from the executions), ``retention``
(old executions deleted in small batches).
Tables: ``schemas.tables``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from schemas.errors import StoreError
from workers.store._db import Db
from workers.store.admission import Admitted, admit_execution, jobs_with_active
from workers.store.audit import (
    FINAL_OUTCOMES,
    RecoveryRow,
    TakeoverRow,
    find_recovery,
    find_takeover,
    list_recoveries,
    list_takeovers,
    record_recovery,
    record_takeover,
)
from workers.store.commands import (
    CommandRow,
    finish_command,
    get_command,
    insert_command,
    list_commands,
    pending_command_targets,
    reroute_command,
)
from workers.store.concurrency import ActiveExecution, Admission, decide_admission
from workers.store.engine import Store, create_store_engine, default_sqlite_url, masked_url
from workers.store.executions import (
    ExecutionRow,
    NewExecution,
    abort_execution,
    finish_execution,
    get_execution,
    insert_execution,
    insert_executions,
    list_executions,
    list_queued_before,
    list_unqueued,
    lock_jobs,
    mark_incomplete,
    mark_queued,
    mark_queued_at_fire,
    move_scheduled_executions,
    start_execution,
    unmark_queued,
    unmark_queued_at_fire,
)
from workers.store.fence import (
    FireClaim,
    claim_fire,
    claim_fires,
    fire_job,
    record_fire,
    set_next_fire_ms,
)
from workers.store.job_delete import (
    DELETED_REASON,
    DeletedJob,
    delete_job,
    purge_deleted_jobs,
)
from workers.store.job_reads import count_jobs_by_owner, find_job, get_job, list_jobs
from workers.store.jobs import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MISFIRE,
    JobRow,
    create_job,
    job_path,
    reassign_jobs,
    update_job,
)
from workers.store.members import (
    MemberRow,
    get_member,
    known_member_uuids,
    list_members,
    record_member_state,
)
from workers.store.migrate import (
    check_migrated,
    current_revision,
    head_revision,
    script_head_revision,
    upgrade,
)
from workers.store.recovery import (
    RecoveryResult,
    RunningExecution,
    Unfinished,
    commit_recovery,
    count_unfinished,
    running_executions,
)
from workers.store.report import (
    MissedFires,
    count_double_fires,
    count_executions_by_member,
    count_missed_fires,
    fire_times_by_job,
    missing_fire_times,
    split_missed_fires,
)
from workers.store.retention import (
    RETENTION_BATCH_ROWS,
    delete_expired_executions,
    expired_before_ms,
)
from workers.store.running import (
    Backlog,
    Finish,
    StartedExecution,
    count_backlog,
    ended_at,
    finish_executions,
    running_here,
    start_executions,
)
from workers.store.takeover import (
    ALL_OWNERS,
    MovedJob,
    TakeoverCommit,
    commit_takeover,
    record_takeover_outcome,
)

__all__ = [
    "ALL_OWNERS",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MISFIRE",
    "DELETED_REASON",
    "FINAL_OUTCOMES",
    "RETENTION_BATCH_ROWS",
    "ActiveExecution",
    "Admission",
    "Admitted",
    "Backlog",
    "CommandRow",
    "Db",
    "DeletedJob",
    "ExecutionRow",
    "Finish",
    "FireClaim",
    "JobRow",
    "MemberRow",
    "MissedFires",
    "MovedJob",
    "NewExecution",
    "RecoveryResult",
    "RecoveryRow",
    "RunningExecution",
    "StartedExecution",
    "Store",
    "StoreSettings",
    "TakeoverCommit",
    "TakeoverRow",
    "Unfinished",
    "abort_execution",
    "admit_execution",
    "check_migrated",
    "claim_fire",
    "claim_fires",
    "commit_recovery",
    "commit_takeover",
    "count_backlog",
    "count_double_fires",
    "count_executions_by_member",
    "count_jobs_by_owner",
    "count_missed_fires",
    "count_unfinished",
    "create_job",
    "create_store_engine",
    "current_revision",
    "decide_admission",
    "default_sqlite_url",
    "delete_expired_executions",
    "delete_job",
    "ended_at",
    "expired_before_ms",
    "find_job",
    "find_recovery",
    "find_takeover",
    "finish_command",
    "finish_execution",
    "finish_executions",
    "fire_job",
    "fire_times_by_job",
    "get_command",
    "get_execution",
    "get_job",
    "get_member",
    "head_revision",
    "insert_command",
    "insert_execution",
    "insert_executions",
    "job_path",
    "jobs_with_active",
    "known_member_uuids",
    "list_commands",
    "list_executions",
    "list_jobs",
    "list_members",
    "list_queued_before",
    "list_recoveries",
    "list_takeovers",
    "list_unqueued",
    "lock_jobs",
    "mark_incomplete",
    "mark_queued",
    "mark_queued_at_fire",
    "masked_url",
    "missing_fire_times",
    "move_scheduled_executions",
    "open_store",
    "pending_command_targets",
    "purge_deleted_jobs",
    "reassign_jobs",
    "record_fire",
    "record_member_state",
    "record_recovery",
    "record_takeover",
    "record_takeover_outcome",
    "reroute_command",
    "running_executions",
    "running_here",
    "script_head_revision",
    "set_next_fire_ms",
    "split_missed_fires",
    "start_execution",
    "start_executions",
    "store_url",
    "unmark_queued",
    "unmark_queued_at_fire",
    "update_job",
    "upgrade",
]

log = logging.getLogger(__name__)


class StoreSettings(Protocol):
    """The two settings the store reads (``schemas.settings.Settings`` has both)."""

    @property
    def database_url(self) -> str | None: ...

    @property
    def home_dir(self) -> Path: ...


def store_url(settings: StoreSettings) -> str:
    """The configured database URL, or the embedded SQLite file under ``home_dir``."""
    return settings.database_url or default_sqlite_url(settings.home_dir)


def open_store(settings: StoreSettings) -> Store:
    """Open the store of ``settings``.

    A SQLite database (the embedded default when ``database_url`` is None) is migrated
    automatically. Any other database (PostgreSQL) is only checked: when its schema is
    missing or outdated this raises ``StoreError`` asking to run ``qwc db upgrade``.
    Raises ``StoreError`` too when the database cannot be reached or the URL is invalid.
    On PostgreSQL, a session idle inside a transaction for ``heartbeat_consider_dead_s``
    (when ``settings`` has it) is ended by the server (:func:`create_store_engine`).
    """
    url = store_url(settings)
    # A session idle in a transaction for considerDead belongs to a process the cluster
    # would declare dead: PostgreSQL ends it, releasing the locks a takeover needs.
    idle_s = getattr(settings, "heartbeat_consider_dead_s", None)
    try:
        engine = create_store_engine(url, idle_in_transaction_timeout_s=idle_s)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(f"invalid database URL {masked_url(url)}: {exc}") from exc
    try:
        if engine.dialect.name == "sqlite" and current_revision(engine) != head_revision():
            upgrade(engine)
        else:
            check_migrated(engine)
    except BaseException:
        engine.dispose()
        raise
    log.info("store: opened %s", masked_url(url))
    return Store(engine)
