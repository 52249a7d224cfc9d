"""Remote commands and the dispatch mark of executions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

* ``executions.queued_ms``: when the execution's member put it on its RQ queue (NULL: not
  yet). A member enqueues its ``scheduled`` executions that are due and not queued, so an
  execution committed but never enqueued (a crash in between, a retry created by another
  process) is enqueued later instead of staying ``scheduled`` forever.
* ``commands``: the record of every remote execute / abort command.

Kept in sync with ``schemas/tables.py`` by tests/test_store_migrate.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMAND_ACTIONS = "'execute', 'abort'"
COMMAND_STATUSES = "'pending', 'done', 'expired', 'failed', 'cancelled'"


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("queued_ms", sa.BigInteger(), nullable=True))
    op.create_table(
        "commands",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target_uuid", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("issued_by", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("routed", sa.Integer(), nullable=False),
        sa.Column("processed_ms", sa.BigInteger(), nullable=True),
        sa.Column("processed_by", sa.String(255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
        sa.CheckConstraint(f'"action" IN ({COMMAND_ACTIONS})', name=op.f("ck_commands_action")),
        sa.CheckConstraint(f'"status" IN ({COMMAND_STATUSES})', name=op.f("ck_commands_status")),
    )
    op.create_index(op.f("ix_commands_execution_id"), "commands", ["execution_id"])
    op.create_index(op.f("ix_commands_target_uuid_status"), "commands", ["target_uuid", "status"])


def downgrade() -> None:
    op.drop_table("commands")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("queued_ms")
