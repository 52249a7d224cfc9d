"""``qwc db``: the SQL store's schema (Alembic migrations)."""

from __future__ import annotations

import click
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from schemas.errors import StoreError
from workers.cli.common import CliContext, fail, pass_cli
from workers.store import (
    create_store_engine,
    current_revision,
    head_revision,
    masked_url,
    store_url,
    upgrade,
)

__all__ = ["COMMANDS", "db"]


@click.group()
def db() -> None:
    """The SQL store shared by the members and workers.

    The database is QWC_DATABASE_URL / qwcontrol.dataSource.url (a SQLAlchemy URL such as
    postgresql+psycopg://user:password@host/dbname), or the embedded SQLite file
    $QWC_HOME/qwc.db when none is set. The embedded database is migrated automatically;
    a PostgreSQL database must be migrated with `qwc db upgrade` first.
    """


@db.command("upgrade", short_help="Migrate the database to the newest schema.")
@pass_cli
def upgrade_command(cli: CliContext) -> None:
    """Migrate the database to the newest schema (safe to run again, or from several
    processes at once).

    Prints `database <url> at revision <rev>` (password masked). Exits 1 when the database
    cannot be reached or the migration fails.
    """
    url, engine = _engine(cli)
    try:
        upgrade(engine)
        revision = current_revision(engine)
    except StoreError as exc:
        fail(str(exc))
        return
    finally:
        engine.dispose()
    click.echo(f"database {masked_url(url)} at revision {revision}")


@db.command("current", short_help="Show the database's schema revision.")
@pass_cli
def current_command(cli: CliContext) -> None:
    """Show the database's schema revision and the newest one; change nothing.

    Exits 1 when the database cannot be reached, 3 when it is not at the newest revision.
    """
    url, engine = _engine(cli)
    try:
        revision = current_revision(engine)
    except StoreError as exc:
        fail(str(exc))
        return
    finally:
        engine.dispose()
    head = head_revision()
    click.echo(f"database {masked_url(url)} at revision {revision or '(none)'} (newest {head})")
    if revision != head:
        fail("database is not migrated: run `qwc db upgrade`", code=3)


def _engine(cli: CliContext) -> tuple[str, Engine]:
    """The effective database URL and an engine for it; exits 1 when the URL is invalid
    or the data directory of the embedded database cannot be created."""
    settings = cli.settings()
    try:
        url = store_url(settings)
    except OSError as exc:
        fail(f"cannot create the data directory {settings.home_dir}: {exc}")
        raise  # unreachable: fail() exits
    try:
        return url, create_store_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        fail(f"invalid database URL {masked_url(url)}: {exc}")
        raise  # unreachable: fail() exits


COMMANDS: list[click.Command] = [db]
