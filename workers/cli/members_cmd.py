"""``qwc members``: the cluster view, as the liveness workers see it."""

from __future__ import annotations

import click
from rich.console import Console

from schemas.keys import Keys
from workers.bus.connect import connect
from workers.cli.common import CliContext, echo_json, pass_cli
from workers.liveness.listing import collect_member_rows
from workers.store import open_store
from workers.tables import members_table
from workers.takeover.guard import held_takeovers

__all__ = ["COMMANDS"]


@click.command()
@click.option("--wide", is_flag=True, help="Also last_seen (ISO UTC) and tags.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@pass_cli
def members(cli: CliContext, wide: bool, as_json: bool) -> None:
    """Show every member: name, uuid (never cut), state, age_s, jobs owned, and its
    executions running (run) and waiting (wait: due, not started) (--wide: last_seen and
    tags too; --json: everything).

    State and age come from the liveness view in Redis (ages on the Redis server clock);
    members only the store knows (for example owners of jobs that never heartbeat since the
    view began) are listed with the state the store last recorded. run and wait come
    from the store: waiting executions are due on the member and not started yet
    (every slot of its pool busy, or the member cut off from Redis or gone). --json adds
    executions_running and executions_waiting to each row (and running: the executions
    in its last heartbeat).
    """
    settings = cli.settings()
    client = connect(settings)
    store = open_store(settings)
    keys = Keys(settings.redis_prefix)
    try:
        rows = collect_member_rows(client, store, keys)
        held = held_takeovers(client, keys)
    finally:
        client.close()
        store.close()
    if as_json:
        echo_json(rows)
    else:
        Console().print(members_table(rows, wide=wide))
    for proposal_id, reason in sorted(held.items()):  # on stderr with --json: stdout stays JSON
        click.echo(f"takeover {proposal_id} held: {reason}", err=as_json)


COMMANDS: list[click.Command] = [members]
