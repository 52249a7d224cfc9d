"""``qwc node``: the reference member (for now: a member that heartbeats)."""

from __future__ import annotations

import logging

import click

from producers.heartbeat import HeartbeatProducer
from schemas.keys import Keys
from workers.bus.connect import connect
from workers.cli.common import CliContext, fail, pass_cli, stop_on_signals

__all__ = ["COMMANDS"]

log = logging.getLogger(__name__)


def _split_tags(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(t.strip() for t in value.split(",") if t.strip())


@click.command()
@click.option("--uuid", "uuid_", default=None, help="Member UUID (default: qwcontrol.server.uuid).")
@click.option("--name", default=None, help="Member name (default: qwcontrol.server.name).")
@click.option("--tags", default=None, help="Comma-separated tags (default: qwcontrol.server.tags).")
@click.option("--passive", is_flag=True, help="Never receive taken-over jobs or retries.")
@pass_cli
def node(
    cli: CliContext, uuid_: str | None, name: str | None, tags: str | None, passive: bool
) -> None:
    """Run a cluster member in the foreground until SIGTERM or Ctrl-C.

    It waits qwcontrol.clusterMode.heartbeat.delay seconds, then publishes a heartbeat every
    qwcontrol.clusterMode.heartbeat.interval seconds, and keeps trying through Redis outages.
    """
    overrides: dict[str, object] = {}
    if uuid_ is not None:
        overrides["server_uuid"] = uuid_
    if name is not None:
        overrides["server_name"] = name
    if (tag_list := _split_tags(tags)) is not None:
        overrides["server_tags"] = tag_list
    settings = cli.settings(**overrides)
    if settings.server_uuid is None:
        fail("a member needs a UUID: --uuid or qwcontrol.server.uuid", 2)
        return
    member_name = settings.server_name or settings.server_uuid[:8]
    stop = stop_on_signals()
    client = connect(settings, client_name=f"node-{member_name}")
    producer = HeartbeatProducer(
        client,
        uuid=settings.server_uuid,
        name=member_name,
        interval_s=settings.heartbeat_interval_s,
        delay_s=settings.heartbeat_delay_s,
        keys=Keys(settings.redis_prefix),
        tags=settings.server_tags,
        passive=passive,
    )
    producer.start()
    log.info("member %s (%s): running", settings.server_uuid, member_name)
    click.echo(f"member {settings.server_uuid} ({member_name}) running; Ctrl-C stops it", err=True)
    while not stop.wait(1.0):
        pass
    producer.stop()
    client.close()
    log.info("member %s (%s): stopped", settings.server_uuid, member_name)


COMMANDS: list[click.Command] = [node]
