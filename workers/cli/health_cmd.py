"""``qwc health``: does this process's Redis answer, and is its store reachable and migrated?

The container image's HEALTHCHECK runs it; so can any supervisor. It never starts the
embedded Redis server (a health check must not change what it checks).
"""

from __future__ import annotations

import click
import redis
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from schemas.errors import QwcError
from schemas.settings import Settings
from workers.bus.connect import connect
from workers.bus.embedded import EmbeddedRedis
from workers.cli.common import CliContext, echo_json, pass_cli
from workers.store import create_store_engine, current_revision, head_revision, store_url

__all__ = ["COMMANDS", "check_redis", "check_store"]


def check_redis(settings: Settings) -> str | None:
    """None when the configured Redis (or the running embedded server) answers PING, else
    why not. Never starts the embedded server."""
    url = settings.redis_url or EmbeddedRedis(settings.home_dir).url()
    if url is None:
        return f"the embedded Redis server of {settings.home_dir} is not running"
    client = connect(url, client_name="qwc-health")
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis does not answer: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def check_store(settings: Settings) -> str | None:
    """None when the store answers and is at the newest schema revision, else why not."""
    try:
        engine = create_store_engine(store_url(settings))
    except (ArgumentError, NoSuchModuleError, OSError) as exc:
        return f"invalid database URL or data directory: {exc}"
    try:
        revision = current_revision(engine)
    except (QwcError, SQLAlchemyError) as exc:
        return f"the store does not answer: {str(exc).splitlines()[0] if str(exc) else exc}"
    finally:
        engine.dispose()
    head = head_revision()
    if revision != head:
        return f"the store is at revision {revision or '(none)'}, not {head}: run `qwc db upgrade`"
    return None


@click.command()
@click.option("--json", "as_json", is_flag=True, help='Print {"redis": ..., "store": ...}.')
@pass_cli
def health(cli: CliContext, as_json: bool) -> None:
    """Check that Redis answers and the store is reachable and migrated; exit 1 if not.

    Redis is qwcontrol.redis.url, else the embedded server of the data directory (which
    this command never starts). The store is qwcontrol.dataSource.url, else the embedded
    SQLite file; it must be at the newest schema revision. Prints one line per check
    (`redis ok`, `store ok`, or what is wrong). The container image's HEALTHCHECK.
    """
    settings = cli.settings()
    problems = {"redis": check_redis(settings), "store": check_store(settings)}
    if as_json:
        echo_json({name: problem or "ok" for name, problem in problems.items()})
    else:
        for name, problem in problems.items():
            click.echo(f"{name} {problem or 'ok'}", err=problem is not None)
    if any(problems.values()):
        raise SystemExit(1)


COMMANDS: list[click.Command] = [health]
