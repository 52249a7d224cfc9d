"""``qwc recoveries``: the history of execution recoveries."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from workers.cli.common import CliContext, echo_json, pass_cli
from workers.recovery.history import recovery_json
from workers.store import list_recoveries, open_store

__all__ = ["COMMANDS"]

COLUMNS = ("decided_at", "dead_uuid", "policy", "outcome", "executions_marked", "retried", "detail")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@click.option("--limit", default=100, show_default=True, help="Most recent first.")
@pass_cli
def recoveries(cli: CliContext, as_json: bool, limit: int) -> None:
    """The recovery history: proposals and what became of them.

    Each row is one recovery proposal for a dead member: its outcome (committed,
    cancelled, skipped, no_destination), how many running executions were marked
    incomplete, and the retries started (JSON: execution, job, from, to, retry_execution,
    attempt, not_before_ms).
    """
    settings = cli.settings()
    store = open_store(settings)
    try:
        rows = [recovery_json(r) for r in list_recoveries(store, limit=limit)]
    finally:
        store.close()
    if as_json:
        echo_json(rows)
        return
    table = Table(title="recoveries")
    for col in COLUMNS:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c] if r[c] is not None else "-") for c in COLUMNS))
    Console().print(table)


COMMANDS: list[click.Command] = [recoveries]
