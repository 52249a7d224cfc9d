"""Per-job settings (executor, timeout, concurrency) and what executions keep.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

``scheduled_jobs``:

* ``executor`` (``command|shell|http|python``) and ``executor_spec`` (a JSON object with the
  kind's parameters). A ``command`` job keeps its argv in ``command`` as before (its spec is
  ``{}``), so existing rows are ``command`` jobs unchanged, and a member of the previous
  release still runs them during a rolling upgrade; the other kinds have ``command = []``.
* ``timeout_s``: NULL (existing rows) = no timeout.
* ``concurrency`` (``allow|forbid|replace``): existing rows get ``allow``, today's behaviour;
  new jobs get their value from the code (``forbid`` by default).

The new columns have database defaults (``command``, ``{}``, ``allow``) so that a process of
the previous release, which inserts jobs without them, keeps working during a rolling
upgrade ("migrations only add", docs/operations.md).

``executions``:

* statuses ``timedout`` and ``skipped`` (the CHECK constraint is replaced);
* ``reason``: why it was skipped, aborted, replaced or timed out (NULL for existing rows);
* ``output``: the head and the tail of the output; existing rows get their ``output_tail``.
  ``output_tail`` stays for the previous release's members (they write it); the code reads
  it only for a row without ``output``; a later migration drops it;
* the index on ``job_id`` becomes ``(job_id, status)`` (a fire looks for the job's running
  executions), and ``ended_ms`` is indexed (retention deletes the oldest ended ones).

SQLite alters tables through batch mode ("move and copy"); named CHECK constraints are
carried over and replaced by name. Kept in sync with ``schemas/tables.py`` by
tests/test_store_migrate.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'scheduled', 'running', 'succeeded', 'failed', 'aborted', 'incomplete'"
NEW_STATUSES = OLD_STATUSES + ", 'timedout', 'skipped'"
EXECUTOR_KINDS = "'command', 'shell', 'http', 'python'"
CONCURRENCY_POLICIES = "'allow', 'forbid', 'replace'"


def upgrade() -> None:
    _jobs_upgrade()
    _executions_upgrade()


def _jobs_upgrade() -> None:
    with op.batch_alter_table("scheduled_jobs") as batch:
        batch.add_column(
            sa.Column("executor", sa.String(16), nullable=False, server_default="command")
        )
        batch.add_column(
            sa.Column("executor_spec", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(sa.Column("timeout_s", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("concurrency", sa.String(16), nullable=False, server_default="allow")
        )
        batch.create_check_constraint(
            op.f("ck_scheduled_jobs_executor"), f'"executor" IN ({EXECUTOR_KINDS})'
        )
        batch.create_check_constraint(
            op.f("ck_scheduled_jobs_concurrency"), f'"concurrency" IN ({CONCURRENCY_POLICIES})'
        )
        batch.create_check_constraint(
            op.f("ck_scheduled_jobs_timeout_s"), "timeout_s IS NULL OR timeout_s > 0"
        )


def _executions_upgrade() -> None:
    op.drop_index(op.f("ix_executions_job_id"), table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("output", sa.Text(), nullable=True))
        batch.drop_constraint(op.f("ck_executions_status"), type_="check")
        batch.create_check_constraint(op.f("ck_executions_status"), f'"status" IN ({NEW_STATUSES})')
    op.execute("UPDATE executions SET output = output_tail WHERE output_tail IS NOT NULL")
    op.create_index(op.f("ix_executions_job_id_status"), "executions", ["job_id", "status"])
    op.create_index(op.f("ix_executions_ended_ms"), "executions", ["ended_ms"])


def downgrade() -> None:
    """Back to 0002. Executions ``timedout`` become ``failed`` and ``skipped`` ones are
    deleted (0002 has neither status); outputs go back to ``output_tail`` (whole, not cut
    to 4 KiB); the reasons and the job settings are dropped."""
    op.drop_index(op.f("ix_executions_ended_ms"), table_name="executions")
    op.drop_index(op.f("ix_executions_job_id_status"), table_name="executions")
    op.execute("DELETE FROM executions WHERE status = 'skipped'")
    op.execute("UPDATE executions SET status = 'failed' WHERE status = 'timedout'")
    op.execute("UPDATE executions SET output_tail = output WHERE output IS NOT NULL")
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint(op.f("ck_executions_status"), type_="check")
        batch.create_check_constraint(op.f("ck_executions_status"), f'"status" IN ({OLD_STATUSES})')
        batch.drop_column("reason")
        batch.drop_column("output")
    op.create_index(op.f("ix_executions_job_id"), "executions", ["job_id"])
    with op.batch_alter_table("scheduled_jobs") as batch:
        for name in ("executor", "concurrency", "timeout_s"):
            batch.drop_constraint(op.f(f"ck_scheduled_jobs_{name}"), type_="check")
        for column in ("concurrency", "timeout_s", "executor_spec", "executor"):
            batch.drop_column(column)
