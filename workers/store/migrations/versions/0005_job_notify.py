"""Per-job webhooks: the URLs a job's execution events are POSTed to.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

``scheduled_jobs.notify``: a JSON object, trigger -> list of URLs (Rundeck's
``notification.onstart|onsuccess|onfailure|onretryablefailure`` plus ``ontimeout``;
``workers.jobs.hooks``). Existing rows get ``{}`` (no hooks), the database default, which
is also what a row inserted by the previous release gets during a rolling upgrade. Kept
in sync with ``schemas/tables.py`` by tests/test_store_migrate.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_jobs") as batch:
        batch.add_column(
            sa.Column("notify", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    """Back to 0004: the jobs' hooks are dropped."""
    with op.batch_alter_table("scheduled_jobs") as batch:
        batch.drop_column("notify")
