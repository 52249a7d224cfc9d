"""``qwc members``: the cluster view, as the liveness workers see it."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from schemas.keys import Keys
from workers.bus.connect import connect
from workers.cli.common import CliContext, echo_json, pass_cli
from workers.liveness.listing import collect_member_rows
from workers.store import open_store
from workers.takeover.guard import held_takeovers

__all__ = ["COMMANDS", "STATE_STYLES", "members_table"]

STATE_STYLES = {"active": "green", "inactive": "yellow", "dead": "bold red", "unknown": "dim"}


def members_table(rows: list[dict[str, object]], title: str = "members") -> Table:
    """A rich table of member rows (as returned by ``member_rows``)."""
    table = Table(title=title)
    numbers = ("age_s", "jobs", "running", "waiting")
    for col in ("name", "uuid", "state", "age_s", "last_seen", "jobs", "running", "waiting"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for r in rows:
        state = str(r["state"])
        table.add_row(
            str(r["name"]),
            str(r["uuid"]),
            f"[{STATE_STYLES.get(state, '')}]{state}[/]",
            "-" if r["age_s"] is None else f"{r['age_s']:.1f}",
            str(r["last_seen"] or "-"),
            str(r["jobs_owned"]),
            str(r.get("executions_running", 0)),
            str(r.get("executions_waiting", 0)),
        )
    return table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@pass_cli
def members(cli: CliContext, as_json: bool) -> None:
    """Show every member: uuid, name, state, age_s, last_seen, jobs owned, and its
    executions running and waiting.

    State and age come from the liveness view in Redis (ages on the Redis server clock);
    members only the store knows (for example owners of jobs that never heartbeat since the
    view began) are listed with the state the store last recorded. running and waiting
    come from the store: waiting executions are due on the member and not started yet
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
        Console().print(members_table(rows))
    for proposal_id, reason in sorted(held.items()):  # on stderr with --json: stdout stays JSON
        click.echo(f"takeover {proposal_id} held: {reason}", err=as_json)


COMMANDS: list[click.Command] = [members]
