"""Initial schema: cluster_members, scheduled_jobs, executions, takeovers, recoveries.

Revision ID: 0001
Revises:
Create Date: 2024-11-24

Kept in sync with ``schemas/tables.py`` by tests/test_store_migrate.py (alembic's
``compare_metadata`` finds no difference after upgrading, on SQLite and PostgreSQL).
Constraint names follow ``schemas.tables.NAMING_CONVENTION``, spelled out and wrapped
in ``op.f()`` (final names: the convention must not be applied to them again).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEMBER_STATES = "'active', 'inactive', 'dead', 'unknown'"
EXECUTION_STATUSES = "'scheduled', 'running', 'succeeded', 'failed', 'aborted', 'incomplete'"
EXECUTION_TRIGGERS = "'schedule', 'manual', 'retry', 'remote'"
TAKEOVER_OUTCOMES = "'committed', 'cancelled', 'skipped', 'no_destination', 'held', 'manual'"


def upgrade() -> None:
    _create_cluster_members()
    _create_scheduled_jobs()
    _create_executions()
    _create_audit(
        "takeovers",
        "jobs_moved",
        "destinations",
        sa.CheckConstraint(
            f'"outcome" IN ({TAKEOVER_OUTCOMES})', name=op.f("ck_takeovers_outcome")
        ),
    )
    _create_audit("recoveries", "executions_marked", "retries")


def downgrade() -> None:
    for table in ("recoveries", "takeovers", "executions", "scheduled_jobs", "cluster_members"):
        op.drop_table(table)


def _create_cluster_members() -> None:
    op.create_table(
        "cluster_members",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("passive", sa.Boolean(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=True),
        sa.Column("state_changed_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_cluster_members")),
        sa.CheckConstraint(f'"state" IN ({MEMBER_STATES})', name=op.f("ck_cluster_members_state")),
    )


def _create_scheduled_jobs() -> None:
    op.create_table(
        "scheduled_jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("group_name", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("schedule", sa.String(255), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("owner_uuid", sa.String(36), nullable=False),
        sa.Column("owner_epoch", sa.Integer(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("retry_delay_s", sa.Float(), nullable=False),
        sa.Column("next_fire_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_fire_ms", sa.BigInteger(), nullable=True),
        sa.Column("modified_by", sa.String(36), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_jobs")),
        sa.UniqueConstraint(
            "project", "group_name", "name", name=op.f("uq_scheduled_jobs_project_group_name_name")
        ),
        sa.CheckConstraint("owner_epoch >= 1", name=op.f("ck_scheduled_jobs_owner_epoch")),
        sa.CheckConstraint("retry_count >= 0", name=op.f("ck_scheduled_jobs_retry_count")),
        sa.CheckConstraint("retry_delay_s >= 0", name=op.f("ck_scheduled_jobs_retry_delay_s")),
    )
    op.create_index(op.f("ix_scheduled_jobs_owner_uuid"), "scheduled_jobs", ["owner_uuid"])


def _create_executions() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("member_uuid", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of", sa.String(36), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("fire_ms", sa.BigInteger(), nullable=False),
        sa.Column("owner_epoch", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output_tail", sa.Text(), nullable=True),
        sa.Column("rq_job_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["scheduled_jobs.id"], name=op.f("fk_executions_job_id_scheduled_jobs")
        ),
        sa.CheckConstraint(
            f'"status" IN ({EXECUTION_STATUSES})', name=op.f("ck_executions_status")
        ),
        sa.CheckConstraint(
            f'"trigger" IN ({EXECUTION_TRIGGERS})', name=op.f("ck_executions_trigger")
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_executions_attempt")),
    )
    op.create_index(op.f("ix_executions_job_id"), "executions", ["job_id"])
    op.create_index(op.f("ix_executions_retry_of"), "executions", ["retry_of"])
    op.create_index(
        op.f("ix_executions_member_uuid_status"), "executions", ["member_uuid", "status"]
    )


def _create_audit(
    table: str, count_column: str, list_column: str, *constraints: sa.CheckConstraint
) -> None:
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("proposal_id", sa.String(128), nullable=False),
        sa.Column("dead_uuid", sa.String(36), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("proposed_ms", sa.BigInteger(), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("decided_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column(count_column, sa.Integer(), nullable=False),
        sa.Column(list_column, sa.JSON(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("proposal_id", name=op.f(f"uq_{table}_proposal_id")),
        *constraints,
    )
    op.create_index(op.f(f"ix_{table}_dead_uuid"), table, ["dead_uuid"])
