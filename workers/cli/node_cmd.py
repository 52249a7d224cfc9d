"""``qwc node``: the reference member (heartbeats, schedules its jobs, runs them with RQ)."""

from __future__ import annotations

import click

from schemas.errors import EmbeddedRedisError, StoreError
from workers.cli.common import (
    CliContext,
    announce,
    fail,
    pass_cli,
    require_cluster_mode,
    stop_on_signals,
)
from workers.node.member import run_member

__all__ = ["COMMANDS"]


def _split_tags(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(t.strip() for t in value.split(",") if t.strip())


@click.command()
@click.option("--uuid", "uuid_", default=None, help="Member UUID (default: qwcontrol.server.uuid).")
@click.option(
    "--name",
    default=None,
    help="Member name, at most 200 printable characters (default: qwcontrol.server.name).",
)
@click.option("--tags", default=None, help="Comma-separated tags (default: qwcontrol.server.tags).")
@click.option("--passive", is_flag=True, help="Never receive taken-over jobs or retries.")
@pass_cli
def node(
    cli: CliContext, uuid_: str | None, name: str | None, tags: str | None, passive: bool
) -> None:
    """Run a cluster member in the foreground until SIGTERM or Ctrl-C.

    It waits qwcontrol.clusterMode.heartbeat.delay seconds, then publishes a heartbeat every
    qwcontrol.clusterMode.heartbeat.interval seconds, and keeps trying through Redis outages.
    Every interval it reloads the enabled jobs it owns from the store; it fires each due cron
    time only through the store's fence (a refused fire means the job was taken over: it is
    unscheduled) and runs the job's command on its RQ queue qwc-<uuid>, with an RQ worker it
    runs as a child process. At start it marks its leftover running executions incomplete.
    On SIGTERM it stops firing, gives the running command up to 5 s to finish, and exits.
    """
    overrides: dict[str, object] = {}
    if uuid_ is not None:
        overrides["server_uuid"] = uuid_
    if name is not None:
        overrides["server_name"] = name
    if (tag_list := _split_tags(tags)) is not None:
        overrides["server_tags"] = tag_list
    settings = cli.settings(**overrides)
    require_cluster_mode(settings)
    if settings.server_uuid is None:
        fail("a member needs a UUID: --uuid or qwcontrol.server.uuid", 2)
        return
    member_name = settings.server_name or settings.server_uuid[:8]
    stop = stop_on_signals()
    announce(f"member {settings.server_uuid} ({member_name}) running; Ctrl-C stops it")
    try:
        run_member(
            settings, member_uuid=settings.server_uuid, name=member_name, passive=passive, stop=stop
        )
    except (StoreError, EmbeddedRedisError) as exc:
        fail(f"member {settings.server_uuid}: {exc}", 1)


COMMANDS: list[click.Command] = [node]
