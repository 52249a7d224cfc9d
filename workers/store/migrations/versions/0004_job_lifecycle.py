"""Jobs as operators manage them: enabled flags, time zone, misfire policy, soft delete.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

``scheduled_jobs``:

* ``schedule_enabled`` and ``execution_enabled`` (Rundeck's ``scheduleEnabled`` and
  ``executionEnabled``; database default true). Existing rows get ``schedule_enabled =
  enabled`` (``enabled`` meant "fired by its schedule": a disabled job could still be run).
  ``enabled`` stays: the previous release's members and fence read it, so the store keeps
  it equal to ``schedule_enabled AND execution_enabled`` — a member of the previous release
  never fires a job whose schedule or execution was disabled by the new code.
* ``time_zone`` (NULL: the cluster default ``qwcontrol.scheduler.timeZone``).
* ``misfire`` (``skip|fire_once``, default ``skip``: the behaviour until now) and
  ``misfire_grace_s`` (NULL: 60 s, the fixed grace until now).
* ``description`` (default ``''``).
* ``deleted_ms``: a deleted job keeps its row (its executions keep their foreign key and
  their history) until retention removes the row with the last of them. The unique key
  ``(project, group_name, name)`` becomes a unique index over live rows only
  (``deleted_ms IS NULL``), so a deleted job's name can be used again. For the previous
  release nothing changes: its inserts of a live duplicate are refused as before, and a
  deleted row is disabled (``enabled`` false), so it never fires it.

``executions``: the trigger ``catchup`` (one execution standing for the fire times a job
with misfire policy ``fire_once`` missed) and ``missed_ms`` (a JSON list of those times).

Every new column has a database default (or is nullable), so a process of the previous
release, which writes none of them, keeps working during a rolling upgrade. Kept in sync
with ``schemas/tables.py`` by tests/test_store_migrate.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TRIGGERS = "'schedule', 'manual', 'retry', 'remote'"
NEW_TRIGGERS = OLD_TRIGGERS + ", 'catchup'"
MISFIRE_POLICIES = "'skip', 'fire_once'"
LIVE = "deleted_ms IS NULL"
PATH = ["project", "group_name", "name"]


def upgrade() -> None:
    with op.batch_alter_table("scheduled_jobs") as batch:
        for flag in ("schedule_enabled", "execution_enabled"):
            batch.add_column(
                sa.Column(flag, sa.Boolean(), nullable=False, server_default=sa.true())
            )
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("misfire", sa.String(16), nullable=False, server_default="skip"))
        batch.add_column(sa.Column("misfire_grace_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("deleted_ms", sa.BigInteger(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_scheduled_jobs_misfire"), f'"misfire" IN ({MISFIRE_POLICIES})'
        )
        batch.create_check_constraint(
            op.f("ck_scheduled_jobs_misfire_grace_s"),
            "misfire_grace_s IS NULL OR misfire_grace_s >= 0",
        )
        batch.drop_constraint(op.f("uq_scheduled_jobs_project_group_name_name"), type_="unique")
    op.execute("UPDATE scheduled_jobs SET schedule_enabled = enabled")
    op.create_index(
        "uq_scheduled_jobs_live_path",
        "scheduled_jobs",
        PATH,
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("missed_ms", sa.JSON(), nullable=True))
        batch.drop_constraint(op.f("ck_executions_trigger"), type_="check")
        batch.create_check_constraint(
            op.f("ck_executions_trigger"), f'"trigger" IN ({NEW_TRIGGERS})'
        )


def downgrade() -> None:
    """Back to 0003. Deleted jobs go with their executions (0003 has no deleted job);
    catch-up executions become ``schedule`` ones; ``enabled`` keeps the AND of the flags;
    zones, misfire policies and descriptions are dropped."""
    op.execute(
        "DELETE FROM executions WHERE job_id IN "
        "(SELECT id FROM scheduled_jobs WHERE deleted_ms IS NOT NULL)"
    )
    op.execute("DELETE FROM scheduled_jobs WHERE deleted_ms IS NOT NULL")
    op.execute("UPDATE executions SET \"trigger\" = 'schedule' WHERE \"trigger\" = 'catchup'")
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint(op.f("ck_executions_trigger"), type_="check")
        batch.create_check_constraint(
            op.f("ck_executions_trigger"), f'"trigger" IN ({OLD_TRIGGERS})'
        )
        batch.drop_column("missed_ms")
    op.drop_index("uq_scheduled_jobs_live_path", table_name="scheduled_jobs")
    with op.batch_alter_table("scheduled_jobs") as batch:
        batch.create_unique_constraint(op.f("uq_scheduled_jobs_project_group_name_name"), PATH)
        for name in ("misfire", "misfire_grace_s"):
            batch.drop_constraint(op.f(f"ck_scheduled_jobs_{name}"), type_="check")
        for column in (
            "deleted_ms",
            "description",
            "misfire_grace_s",
            "misfire",
            "time_zone",
            "execution_enabled",
            "schedule_enabled",
        ):
            batch.drop_column(column)
