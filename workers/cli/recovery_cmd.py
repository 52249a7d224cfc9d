"""``qwc recoveries``: the history of execution recoveries."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from workers.cli.common import CliContext, echo_json, pass_cli
from workers.liveness.listing import iso_utc
from workers.store import RecoveryRow, list_recoveries, open_store

__all__ = ["COMMANDS"]

COLUMNS = ("decided_at", "dead_uuid", "policy", "outcome", "executions_marked", "retried", "detail")


def _row(r: RecoveryRow) -> dict[str, Any]:
    return {
        "proposal_id": r.proposal_id,
        "dead_uuid": r.dead_uuid,
        "policy": r.policy,
        "proposed_at": iso_utc(r.proposed_ms),
        "due_at": iso_utc(r.due_ms),
        "decided_at": iso_utc(r.decided_ms),
        "outcome": r.outcome,
        "executions_marked": r.executions_marked,
        "retried": len(r.retries),
        "retries": list(r.retries),
        "detail": r.detail,
    }


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
        rows = [_row(r) for r in list_recoveries(store, limit=limit)]
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
