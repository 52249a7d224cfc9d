"""``qwc node-watchdog`` (hidden): the watchdog process a node starts for itself
(:mod:`workers.node.watchdog`). Its own module, so that it imports nothing of the node."""

from __future__ import annotations

import sys

import click

from workers.node import watchdog

__all__ = ["COMMANDS"]


@click.command("node-watchdog", hidden=True)
def node_watchdog() -> None:
    """The watchdog a node starts for itself (reads its orders on stdin; not for people)."""
    raise SystemExit(watchdog.main(sys.stdin.buffer))


COMMANDS: list[click.Command] = [node_watchdog]
