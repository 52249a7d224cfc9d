"""``qwc``: the command line of QW Control cluster mode (the Cluster Manager's CLI)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import click

from workers.cli.common import CliContext, configure_logging

__all__ = ["cli", "main"]

# Each module under workers/cli/ holding commands exports them as COMMANDS.
COMMAND_MODULES = (
    "config_cmd",
    "db_cmd",
    "demo_cmd",
    "embedded_cmd",
    "jobs_cmd",
    "members_cmd",
    "node_cmd",
    "takeover_cmd",
    "worker_cmd",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="QWC_CONFIG",
    help="qwcontrol-config.properties to read (default: $QWC_CONFIG, then "
    "./qwcontrol-config.properties if it exists).",
)
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
@click.version_option(package_name="qwcontrol-cluster", prog_name="qwc")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """QW Control cluster mode: heartbeats, liveness, autotakeover and execution recovery.

    Members publish heartbeats on Redis; liveness workers turn them into a view of the
    cluster (active / inactive / dead). Without QWC_REDIS_URL and QWC_DATABASE_URL every
    command uses the embedded Redis server and SQLite database of the data directory
    $QWC_HOME (default ./.qwc).
    """
    configure_logging(verbose)
    ctx.obj = CliContext(config_path=config_path)


for name in COMMAND_MODULES:
    for command in import_module(f"workers.cli.{name}").COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="qwc")
