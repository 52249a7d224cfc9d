"""Missed fire times per job: ``scheduled_jobs.missed_fires``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

How many fire times of the job never ran because they were missed: older than the job's
misfire grace when its owner came to them (the member was paused, the store down, the
owner dead), or, with misfire ``skip``, left unclaimed by a previous owner. The member adds
them in the fenced UPDATE that claims the job's next fire (``workers.store.fence``), so
each is counted once and only by the job's owner. Existing rows and rows inserted by the
previous release during a rolling upgrade get 0, the database default. Kept in sync with
``schemas/tables.py`` by tests/test_store_migrate.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_jobs") as batch:
        batch.add_column(
            sa.Column("missed_fires", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    """Back to 0005: the counts of missed fire times are dropped."""
    with op.batch_alter_table("scheduled_jobs") as batch:
        batch.drop_column("missed_fires")
