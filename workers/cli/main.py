"""``qwc``: the command line of QW Control cluster mode (the Cluster Manager's CLI)."""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import click

from schemas.errors import QwcError
from workers.cli.common import LOG_FORMATS, CliContext, configure_logging

__all__ = ["cli", "main"]

# Where each command lives: a module under workers/cli/ exporting its commands as COMMANDS.
# A command's module is imported only when that command runs (or for --help), so a quick
# command such as `qwc members` does not pay for the imports of the manager or the demo.
COMMAND_MODULES = {
    "abort": "commands_cmd",
    "cluster": "cluster_cmd",
    "commands": "commands_cmd",
    "config": "config_cmd",
    "db": "db_cmd",
    "demo": "demo_cmd",
    "embedded": "embedded_cmd",
    "executions": "executions_cmd",
    "health": "health_cmd",
    "jobs": "jobs_cmd",
    "manager": "manager_cmd",
    "members": "members_cmd",
    "node": "node_cmd",
    "node-watchdog": "watchdog_cmd",  # hidden: started by `qwc node` for itself
    "notifications": "notifications_cmd",
    "record": "replay_cmd",
    "recoveries": "recovery_cmd",
    "replay": "replay_cmd",
    "run": "commands_cmd",
    "takeover": "takeover_cmd",
    "takeovers": "takeover_cmd",
    "worker": "worker_cmd",
}


def load_command(name: str) -> click.Command | None:
    """The command ``name`` from its module (None when there is no such command)."""
    module = COMMAND_MODULES.get(name)
    if module is None:
        return None
    commands = import_module(f"workers.cli.{module}").COMMANDS
    return next((c for c in commands if c.name == name), None)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="QWC_CONFIG",
    help="qwcontrol-config.properties to read (default: $QWC_CONFIG, then "
    "./qwcontrol-config.properties if it exists).",
)
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    default="text",
    show_default=True,
    envvar="QWC_LOG_FORMAT",
    help="Log lines on stderr as text, or one JSON object per line (time, level, logger, "
    "message) for a log collector (default: $QWC_LOG_FORMAT, then text).",
)
@click.version_option(package_name="qwcontrol-cluster", prog_name="qwc")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, log_format: str) -> None:
    """QW Control cluster mode: heartbeats, liveness, autotakeover and execution recovery.

    Members publish heartbeats on Redis; liveness workers turn them into a view of the
    cluster (active / inactive / dead). Without QWC_REDIS_URL and QWC_DATABASE_URL every
    command uses the embedded Redis server and SQLite database of the data directory
    $QWC_HOME (default ./.qwc).
    """
    configure_logging(verbose, log_format)
    ctx.obj = CliContext(config_path=config_path)


def main() -> None:
    """Console-script entry point. A :class:`QwcError` no command handled itself ends the
    command with its message on stderr and exit status 1, never a traceback."""
    try:
        cli(prog_name="qwc")
    except QwcError as exc:
        click.echo(f"qwc: error: {exc}", err=True)
        sys.exit(1)
