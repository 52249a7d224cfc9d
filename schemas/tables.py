"""The SQL tables of the store (SQLAlchemy 2 Core), pure data.

Conventions:

* every time is a ``BigInteger`` of milliseconds since the epoch, in a column named
  ``*_ms``; it is compared with Redis server milliseconds, never with a local clock;
* ids of jobs and executions, and member uuids, are UUID strings (``String(36)``);
* ``scheduled_jobs.group_name`` is ``''`` for a job without a group (not NULL), so the
  unique key ``(project, group_name, name)`` also holds for ungrouped jobs;
* JSON columns hold plain lists / objects (decoded by the store's row types).

::

    cluster_members  uuid PK; state active|inactive|dead|unknown; first recorded, last heard
                     (NULL: never heard, e.g. an orphaned job owner), state changed
    scheduled_jobs   id PK; (project, group_name, name) unique among live jobs (deleted_ms
                     NULL); owner_uuid + owner_epoch (the fence: every owner change
                     increments the epoch); last_fire_ms is the last fire time claimed; what
                     runs: executor (kind) with command (argv, kind ``command``) or
                     executor_spec (the other kinds); timeout_s (NULL: none) and concurrency
                     (allow|forbid|replace); 0004: schedule_enabled and execution_enabled
                     (``enabled`` is kept as their AND, what the release before 0004 reads),
                     time_zone (NULL: qwcontrol.scheduler.timeZone), misfire (skip|fire_once)
                     and misfire_grace_s (NULL: 60 s), description, deleted_ms (a deleted
                     job's row stays, so its executions keep their foreign key, until
                     retention removes the row with the last of them); 0005: notify (the
                     job's webhooks: trigger -> URLs, ``workers.jobs.hooks``; {}: none);
                     0006: missed_fires (fire times that never ran, added by the fenced
                     claim of the job's next fire)
    executions       id PK; job_id -> scheduled_jobs.id; status, attempt, retry_of
                     (first execution of the chain), trigger, fire_ms (not before: a retry's
                     fire_ms is when its delay ends), queued_ms (when its member put it on
                     its RQ queue, or will: read before it is due, it is marked queued at
                     its fire_ms; NULL: not yet), owner_epoch; reason (why it was skipped,
                     aborted, replaced, timed out); output (bounded: head and tail;
                     output_tail is what releases before 0003 wrote); missed_ms (0004: the
                     fire times a ``catchup`` execution stands for)
    takeovers        audit of takeover proposals, proposal_id unique
    recoveries       audit of recovery proposals, proposal_id unique
    commands         remote execute / abort commands: the record behind each message on a
                     member's command stream (pending until processed, expired, re-routed)

Migrations under ``workers/store/migrations/versions/`` create exactly these tables; a
test compares the migrated schema with this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
    true,
)

__all__ = [
    "COMMAND_ACTIONS",
    "COMMAND_STATUSES",
    "CONCURRENCY_POLICIES",
    "EXECUTION_STATUSES",
    "EXECUTION_TRIGGERS",
    "EXECUTOR_KINDS",
    "FINAL_EXECUTION_STATUSES",
    "MEMBER_STATES",
    "MISFIRE_POLICIES",
    "NAMING_CONVENTION",
    "TAKEOVER_OUTCOMES",
    "cluster_members",
    "commands",
    "executions",
    "metadata",
    "recoveries",
    "scheduled_jobs",
    "takeovers",
]

MEMBER_STATES = ("active", "inactive", "dead", "unknown")
# 0003: timedout (the job's timeout ended it), skipped (its concurrency policy refused a fire).
FINAL_EXECUTION_STATUSES = ("succeeded", "failed", "aborted", "incomplete", "timedout", "skipped")
EXECUTION_STATUSES = ("scheduled", "running", *FINAL_EXECUTION_STATUSES)
# 0004: catchup (one execution for the fire times a job missed: misfire policy fire_once).
EXECUTION_TRIGGERS = ("schedule", "manual", "retry", "remote", "catchup")
COMMAND_ACTIONS = ("execute", "abort")
COMMAND_STATUSES = ("pending", "done", "expired", "failed", "cancelled")
CONCURRENCY_POLICIES = ("allow", "forbid", "replace")  # 0003, as Kubernetes' concurrencyPolicy
EXECUTOR_KINDS = ("command", "shell", "http", "python")  # 0003
MISFIRE_POLICIES = ("skip", "fire_once")  # 0004
TAKEOVER_OUTCOMES = ("committed", "cancelled", "skipped", "no_destination", "held", "manual")

# Deterministic constraint names, so migrations can name what they alter or drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

UUID_LEN = 36
NAME_LEN = 255
ZONE_LEN = 64  # IANA names are at most about 30 characters


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL text ``"column" IN ('a', 'b')`` for a CHECK constraint (values are constants).

    The column is quoted because ``trigger`` is a keyword in SQLite.
    """
    return f'"{column}" IN ({", ".join(repr(v) for v in values)})'


cluster_members = Table(
    "cluster_members",
    metadata,
    Column("uuid", String(UUID_LEN), primary_key=True),
    Column("name", String(NAME_LEN), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("passive", Boolean, nullable=False),
    Column("version", String(64), nullable=False),
    Column("first_seen_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=True),  # NULL: never heard (orphaned owner)
    Column("state_changed_ms", BigInteger, nullable=False),
    CheckConstraint(_one_of("state", MEMBER_STATES), name="state"),
)

scheduled_jobs = Table(
    "scheduled_jobs",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("project", String(NAME_LEN), nullable=False),
    Column("group_name", String(NAME_LEN), nullable=False),
    Column("name", String(NAME_LEN), nullable=False),
    Column("command", JSON, nullable=False),  # argv of executor "command"; [] for the others
    Column("schedule", String(NAME_LEN), nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("owner_uuid", String(UUID_LEN), nullable=False, index=True),
    Column("owner_epoch", Integer, nullable=False),
    Column("retry_count", Integer, nullable=False),
    Column("retry_delay_s", Float, nullable=False),
    Column("next_fire_ms", BigInteger, nullable=True),
    Column("last_fire_ms", BigInteger, nullable=True),
    Column("modified_by", String(UUID_LEN), nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    # 0003. executor_spec: {} for "command" (its argv is ``command``), {"script"} for
    # "shell", {"method", "url", …} for "http", {"callable", "kwargs"} for "python". The
    # database defaults are what rows written by the previous release get (a command job,
    # overlapping runs allowed: its behaviour); the code gives new jobs "forbid".
    Column("executor", String(16), nullable=False, server_default="command"),
    Column("executor_spec", JSON, nullable=False, server_default=text("'{}'")),
    Column("timeout_s", Float, nullable=True),
    Column("concurrency", String(16), nullable=False, server_default="allow"),
    # 0004. ``enabled`` stays what the previous release reads and the fence checks: the
    # store keeps it equal to schedule_enabled AND execution_enabled. The defaults are what a
    # row the previous release inserts gets: its behaviour until then.
    Column("schedule_enabled", Boolean, nullable=False, server_default=true()),
    Column("execution_enabled", Boolean, nullable=False, server_default=true()),
    Column("time_zone", String(ZONE_LEN), nullable=True),
    Column("misfire", String(16), nullable=False, server_default="skip"),
    Column("misfire_grace_s", Float, nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("deleted_ms", BigInteger, nullable=True),
    # 0005: the job's webhooks, trigger (onstart, onfailure, …) -> list of URLs.
    Column("notify", JSON, nullable=False, server_default=text("'{}'")),
    # 0006: fire times missed (never fired: older than the misfire grace, or left by a
    # previous owner with misfire skip), added by the fenced claim of the next fire.
    Column("missed_fires", BigInteger, nullable=False, server_default=text("0")),
    # 0004: a name is unique among live jobs only, so a deleted job's name can be used again.
    Index(
        "uq_scheduled_jobs_live_path",
        "project",
        "group_name",
        "name",
        unique=True,
        sqlite_where=text("deleted_ms IS NULL"),
        postgresql_where=text("deleted_ms IS NULL"),
    ),
    CheckConstraint("owner_epoch >= 1", name="owner_epoch"),
    CheckConstraint("retry_count >= 0", name="retry_count"),
    CheckConstraint("retry_delay_s >= 0", name="retry_delay_s"),
    CheckConstraint(_one_of("executor", EXECUTOR_KINDS), name="executor"),
    CheckConstraint(_one_of("concurrency", CONCURRENCY_POLICIES), name="concurrency"),
    CheckConstraint("timeout_s IS NULL OR timeout_s > 0", name="timeout_s"),
    CheckConstraint(_one_of("misfire", MISFIRE_POLICIES), name="misfire"),
    CheckConstraint("misfire_grace_s IS NULL OR misfire_grace_s >= 0", name="misfire_grace_s"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("job_id", String(UUID_LEN), ForeignKey("scheduled_jobs.id"), nullable=False),
    Column("member_uuid", String(UUID_LEN), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("retry_of", String(UUID_LEN), nullable=True, index=True),
    Column("trigger", String(16), nullable=False),
    Column("fire_ms", BigInteger, nullable=False),
    Column("owner_epoch", Integer, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("started_ms", BigInteger, nullable=True),
    Column("ended_ms", BigInteger, nullable=True),
    Column("exit_code", Integer, nullable=True),
    # Written by releases before 0003 (the last 4 KiB); read only as a fallback of output.
    Column("output_tail", Text, nullable=True),
    Column("rq_job_id", String(128), nullable=True),
    Column("queued_ms", BigInteger, nullable=True),  # 0002
    Column("reason", Text, nullable=True),  # 0003
    Column("output", Text, nullable=True),  # 0003: head and tail, up to output.maxBytes
    Column("missed_ms", JSON, nullable=True),  # 0004: a catchup's missed fire times (epoch ms)
    # member_uuid leads, so this index also serves lookups by member alone.
    Index(None, "member_uuid", "status"),
    # 0003: a fire finds the job's running executions without reading all of its history
    # (replaces the index on job_id alone); retention finds old ended executions in order.
    Index(None, "job_id", "status"),
    Index(None, "ended_ms"),
    CheckConstraint(_one_of("status", EXECUTION_STATUSES), name="status"),
    CheckConstraint(_one_of("trigger", EXECUTION_TRIGGERS), name="trigger"),
    CheckConstraint("attempt >= 1", name="attempt"),
)


def _audit_table(name: str, count_column: str, list_column: str) -> Table:
    """``takeovers`` and ``recoveries`` share one shape but for what they count and list."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("proposal_id", String(128), nullable=False, unique=True),
        Column("dead_uuid", String(UUID_LEN), nullable=False, index=True),
        Column("policy", String(32), nullable=False),
        Column("proposed_ms", BigInteger, nullable=False),
        Column("due_ms", BigInteger, nullable=False),
        Column("decided_ms", BigInteger, nullable=True),
        Column("outcome", String(32), nullable=True),
        Column(count_column, Integer, nullable=False),
        Column(list_column, JSON, nullable=False),
        Column("detail", Text, nullable=False),
    )


takeovers = _audit_table("takeovers", "jobs_moved", "destinations")
takeovers.append_constraint(
    CheckConstraint(_one_of("outcome", TAKEOVER_OUTCOMES), name="outcome"),
)
recoveries = _audit_table("recoveries", "executions_marked", "retries")


# 0002. ``target_uuid`` is the member whose stream holds the command now (a re-route
# changes it; ``routed`` counts the changes). ``processed_ms``/``processed_by``: when and by
# whom it reached a final status; ``detail`` says what happened, in words.
commands = Table(
    "commands",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("action", String(16), nullable=False),
    Column("target_uuid", String(UUID_LEN), nullable=False),
    Column("job_id", String(UUID_LEN), nullable=True),
    Column("execution_id", String(UUID_LEN), nullable=True, index=True),
    Column("issued_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("issued_by", String(NAME_LEN), nullable=False),
    Column("status", String(16), nullable=False),
    Column("routed", Integer, nullable=False),
    Column("processed_ms", BigInteger, nullable=True),
    Column("processed_by", String(NAME_LEN), nullable=True),
    Column("detail", Text, nullable=False),
    Index(None, "target_uuid", "status"),
    CheckConstraint(_one_of("action", COMMAND_ACTIONS), name="action"),
    CheckConstraint(_one_of("status", COMMAND_STATUSES), name="status"),
)
