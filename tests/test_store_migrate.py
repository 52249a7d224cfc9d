"""Migrations: idempotent, equal to schemas.tables, safe when run concurrently; open_store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from schemas.errors import StoreError
from schemas.tables import metadata
from workers.store import (
    Store,
    check_migrated,
    create_store_engine,
    current_revision,
    default_sqlite_url,
    get_execution,
    get_job,
    head_revision,
    list_executions,
    masked_url,
    open_store,
    script_head_revision,
    upgrade,
)
from workers.store.migrate import alembic_config

TABLES = {
    "cluster_members",
    "scheduled_jobs",
    "executions",
    "takeovers",
    "recoveries",
    "commands",
}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_store_engine(db_url)
    yield engine
    engine.dispose()


def test_upgrade_creates_the_tables_and_is_idempotent(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0006"
    upgrade(engine)
    assert current_revision(engine) == "0006"
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}


def test_migrated_schema_matches_the_metadata(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def _names_in_database(engine: Engine, table: str) -> set[str]:
    inspector = inspect(engine)
    found = [inspector.get_pk_constraint(table)]
    found += inspector.get_unique_constraints(table) + inspector.get_check_constraints(table)
    found += inspector.get_foreign_keys(table) + inspector.get_indexes(table)
    return {str(item["name"]) for item in found}


def test_migrated_constraint_names_are_those_of_the_metadata(engine: Engine) -> None:
    # compare_metadata does not look at CHECK constraints nor every name: compare names here.
    upgrade(engine)
    for table in metadata.sorted_tables:
        expected = {str(c.name) for c in table.constraints} | {str(i.name) for i in table.indexes}
        assert _names_in_database(engine, table.name) == expected, table.name


def test_concurrent_upgrades_from_two_processes(db_url: str) -> None:
    code = (
        "import sys\n"
        "from workers.store import create_store_engine, upgrade\n"
        "engine = create_store_engine(sys.argv[1])\n"
        "upgrade(engine)\n"
        "engine.dispose()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], errors
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    finally:
        engine.dispose()


def test_open_store_migrates_the_embedded_sqlite(tmp_path: Path) -> None:
    settings = SimpleNamespace(database_url=None, home_dir=tmp_path / "home")
    store = open_store(settings)
    try:
        assert store.dialect == "sqlite"
        assert (tmp_path / "home" / "qwc.db").is_file()
        assert current_revision(store.engine) == head_revision()
    finally:
        store.dispose()


def test_open_store_migrates_sqlite_but_only_checks_a_server(db_url: str, tmp_path: Path) -> None:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        store = open_store(SimpleNamespace(database_url=db_url, home_dir=tmp_path))
        try:
            assert current_revision(store.engine) == head_revision()
        finally:
            store.dispose()
        return
    with_password = url.set(password="s3cret").render_as_string(hide_password=False)
    settings = SimpleNamespace(database_url=with_password, home_dir=tmp_path)
    with pytest.raises(StoreError, match="is not migrated: run `qwc db upgrade`") as caught:
        open_store(settings)
    assert "s3cret" not in str(caught.value)
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) is None  # nothing was created
    finally:
        engine.dispose()


def test_open_store_on_a_migrated_server_database(db_url: str, tmp_path: Path) -> None:
    engine = create_store_engine(db_url)
    upgrade(engine)
    engine.dispose()
    store = open_store(SimpleNamespace(database_url=db_url, home_dir=tmp_path))
    try:
        check_migrated(store.engine)
        assert store.url == masked_url(db_url)
    finally:
        store.dispose()


def test_unreachable_database_is_a_store_error() -> None:
    engine = create_store_engine("postgresql+psycopg://u:s3cret@127.0.0.1:1/none")
    try:
        with pytest.raises(StoreError, match="cannot reach database") as caught:
            current_revision(engine)
        assert "s3cret" not in str(caught.value)
        with pytest.raises(StoreError, match="cannot migrate database"):
            upgrade(engine)
    finally:
        engine.dispose()


def test_default_sqlite_url_creates_the_directory(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert url == f"sqlite:///{(tmp_path / 'a' / 'b' / 'qwc.db').resolve()}"


def test_masked_url_hides_the_password() -> None:
    assert masked_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"
    assert "pw" not in masked_url("not a url://u:pw@h")


def test_upgrade_from_0001_keeps_the_executions(engine: Engine) -> None:
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO scheduled_jobs (id, project, group_name, name, command, schedule, "
            "enabled, owner_uuid, owner_epoch, retry_count, retry_delay_s, modified_by, "
            "modified_ms, created_ms) VALUES ('j', 'p', '', 'n', '[]', NULL, true, 'o', 1, 0, "
            "0, 'o', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO executions (id, job_id, member_uuid, status, attempt, trigger, "
            "fire_ms, created_ms) VALUES ('e', 'j', 'o', 'running', 1, 'schedule', 5, 5)"
        )
    upgrade(engine)
    assert current_revision(engine) == "0006"
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, status, queued_ms FROM executions").all()
    assert [tuple(r) for r in rows] == [("e", "running", None)]


def _insert_0002_rows(engine: Engine) -> None:
    """A job and two executions as the 0002 schema has them."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO scheduled_jobs (id, project, group_name, name, command, schedule, "
            "enabled, owner_uuid, owner_epoch, retry_count, retry_delay_s, modified_by, "
            "modified_ms, created_ms) VALUES ('j', 'p', '', 'n', '[\"echo\", \"hi\"]', "
            "'* * * * *', true, 'o', 3, 1, 0.5, 'o', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO executions (id, job_id, member_uuid, status, attempt, trigger, "
            "fire_ms, created_ms, ended_ms, exit_code, output_tail, queued_ms) VALUES "
            "('e1', 'j', 'o', 'failed', 1, 'schedule', 5, 5, 7, 2, 'the end of it', 6), "
            "('e2', 'j', 'o', 'running', 1, 'schedule', 8, 8, NULL, NULL, NULL, 8)"
        )


def test_upgrade_from_0002_keeps_jobs_and_executions_as_they_were(engine: Engine) -> None:
    upgrade(engine, "0002")
    _insert_0002_rows(engine)
    upgrade(engine)
    assert current_revision(engine) == "0006"
    job = get_job(engine, "j")
    # an existing job runs as before: its argv, no timeout, overlapping runs allowed
    assert (job.executor, job.executor_spec, job.command) == ("command", {}, ("echo", "hi"))
    assert job.missed_fires == 0
    assert (job.timeout_s, job.concurrency, job.owner_epoch, job.retry_count) == (
        None,
        "allow",
        3,
        1,
    )
    rows = {e.id: e for e in list_executions(engine, job_id="j")}
    assert (rows["e1"].status, rows["e1"].output, rows["e1"].exit_code) == (
        "failed",
        "the end of it",
        2,
    )
    assert (rows["e1"].reason, rows["e2"].status, rows["e2"].output) == (None, "running", None)
    # the new statuses are allowed now; others are still refused
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE executions SET status = 'timedout' WHERE id = 'e1'")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE executions SET status = 'lost' WHERE id = 'e1'")


def test_the_previous_release_keeps_working_on_0003(engine: Engine) -> None:
    """During a rolling upgrade, members and CLIs of the previous release write the 0002
    columns only: their jobs are command jobs allowing overlap, and an output they write
    (output_tail) is the execution's output for the new code."""
    upgrade(engine, "0002")
    _insert_0002_rows(engine)
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO scheduled_jobs (id, project, group_name, name, command, schedule, "
            "enabled, owner_uuid, owner_epoch, retry_count, retry_delay_s, modified_by, "
            "modified_ms, created_ms) VALUES ('k', 'p', '', 'm', '[\"true\"]', NULL, true, "
            "'o', 1, 0, 0, 'o', 1, 1)"
        )
        conn.exec_driver_sql(
            "UPDATE executions SET status = 'succeeded', ended_ms = 9, exit_code = 0, "
            "output_tail = 'written by the old runner' WHERE id = 'e2'"
        )
    old_job = get_job(engine, "k")
    assert (old_job.executor, old_job.executor_spec, old_job.concurrency) == (
        "command",
        {},
        "allow",
    )
    assert get_execution(engine, "e2").output == "written by the old runner"


def test_downgrade_to_0002_and_up_again(engine: Engine) -> None:
    from alembic import command

    upgrade(engine, "0002")
    _insert_0002_rows(engine)
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE executions SET status = 'timedout', output = 'whole output' WHERE id = 'e1'"
        )
    with Store(engine).begin(foreign_keys=False) as conn:  # as upgrade() migrates
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert current_revision(engine) == "0002"
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, status, output_tail FROM executions ORDER BY id")
        assert [tuple(r) for r in rows] == [
            ("e1", "failed", "whole output"),
            ("e2", "running", None),
        ]
    upgrade(engine)
    assert get_job(engine, "j").concurrency == "allow"
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_the_head_revision_constant_is_the_newest_script() -> None:
    assert head_revision() == script_head_revision()


def test_upgrade_from_0003_keeps_each_jobs_enabled_as_its_schedule_flag(engine: Engine) -> None:
    upgrade(engine, "0003")
    _insert_0002_rows(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO scheduled_jobs (id, project, group_name, name, command, schedule, "
            "enabled, owner_uuid, owner_epoch, retry_count, retry_delay_s, modified_by, "
            "modified_ms, created_ms) VALUES ('off', 'p', '', 'off', '[\"true\"]', "
            "'* * * * *', false, 'o', 1, 0, 0, 'o', 1, 1)"
        )
    upgrade(engine)
    on, off = get_job(engine, "j"), get_job(engine, "off")
    assert (on.schedule_enabled, on.execution_enabled, on.enabled) == (True, True, True)
    assert (off.schedule_enabled, off.execution_enabled, off.enabled) == (False, True, False)
    assert (on.time_zone, on.misfire, on.misfire_grace_s) == (None, "skip", None)
    assert on.description == ""
    assert get_execution(engine, "e1").missed_ms is None


def test_the_previous_release_keeps_working_on_0004(engine: Engine) -> None:
    """During a rolling upgrade, the previous release inserts jobs and executions without
    the 0004 columns; a second live job of one name is refused as before, a deleted job's
    name is free."""
    upgrade(engine)
    insert_job = (
        "INSERT INTO scheduled_jobs (id, project, group_name, name, command, schedule, "
        "enabled, owner_uuid, owner_epoch, retry_count, retry_delay_s, modified_by, "
        "modified_ms, created_ms, executor, executor_spec, timeout_s, concurrency) VALUES "
        "('{id}', 'p', '', 'n', '[\"true\"]', NULL, true, 'o', 1, 0, 0, 'o', 1, 1, "
        "'command', '{{}}', NULL, 'forbid')"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(insert_job.format(id="k1"))
    job = get_job(engine, "k1")
    assert (job.schedule_enabled, job.execution_enabled, job.misfire) == (True, True, "skip")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.exec_driver_sql(insert_job.format(id="k2"))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE scheduled_jobs SET deleted_ms = 5 WHERE id = 'k1'")
        conn.exec_driver_sql(insert_job.format(id="k2"))


def test_downgrade_to_0003_drops_deleted_jobs_and_catchups(engine: Engine) -> None:
    from alembic import command

    upgrade(engine)
    _insert_0002_rows(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE executions SET \"trigger\" = 'catchup', missed_ms = '[1, 2]' WHERE id = 'e1'"
        )
        conn.exec_driver_sql(
            "INSERT INTO scheduled_jobs (id, project, group_name, name, command, schedule, "
            "enabled, owner_uuid, owner_epoch, retry_count, retry_delay_s, modified_by, "
            "modified_ms, created_ms, deleted_ms) VALUES ('gone', 'p', '', 'n', '[]', NULL, "
            "false, '', 2, 0, 0, 'o', 1, 1, 9)"
        )
        conn.exec_driver_sql(
            "INSERT INTO executions (id, job_id, member_uuid, status, attempt, trigger, "
            "fire_ms, created_ms) VALUES ('e3', 'gone', 'o', 'succeeded', 1, 'schedule', 5, 5)"
        )
    with Store(engine).begin(foreign_keys=False) as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql('SELECT id, "trigger" FROM executions ORDER BY id').all()
        assert [tuple(r) for r in rows] == [("e1", "schedule"), ("e2", "schedule")]
        assert conn.exec_driver_sql("SELECT id FROM scheduled_jobs").scalars().all() == ["j"]
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
