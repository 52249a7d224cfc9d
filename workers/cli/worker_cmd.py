"""``qwc worker …``: run one of the cluster's worker processes in the foreground."""

from __future__ import annotations

from typing import Any

import click

from workers.bus.connect import connect
from workers.cli.common import (
    CliContext,
    default_consumer_name,
    pass_cli,
    require_cluster_mode,
    stop_on_signals,
)
from workers.liveness.worker import LivenessWorker
from workers.proposals import ProposalWorker, hand_back
from workers.recovery.retention import RetentionCleaner
from workers.recovery.worker import RecoveryWorker
from workers.store import open_store
from workers.takeover.worker import TakeoverWorker

__all__ = ["COMMANDS"]


@click.group()
def worker() -> None:
    """Run a worker process in the foreground (stop it with SIGTERM or Ctrl-C).

    Run as many replicas of each worker as you like: they share a Redis consumer group,
    so each heartbeat or proposal is handled once, and what a dead replica held is
    reclaimed by another. On SIGTERM or Ctrl-C a worker finishes the step it is in (a few
    seconds at most) and exits 0; a takeover or recovery worker first hands the proposals
    it holds back, so another replica takes them at its next scan.
    """


@worker.command()
@click.option(
    "--consumer",
    default=None,
    help="Consumer name in the 'liveness' group (default: liveness-<host>-<pid>). "
    "Give a stable name to resume this consumer's unacknowledged entries after a restart.",
)
@pass_cli
def liveness(cli: CliContext, consumer: str | None) -> None:
    """Turn heartbeats into the cluster view: active / inactive / dead.

    Reads the heartbeats stream in the consumer group 'liveness', ages each member on the
    Redis server clock, emits every state change once on the membership stream and records
    it in the store's cluster_members table. Timings come from
    qwcontrol.clusterMode.heartbeat.considerInactive and .considerDead.
    """
    settings = cli.settings()
    require_cluster_mode(settings)
    stop = stop_on_signals()
    client = connect(settings, client_name=consumer or default_consumer_name("liveness"))
    store = open_store(settings)
    try:
        LivenessWorker(
            client,
            store,
            settings,
            consumer=consumer or default_consumer_name("liveness"),
            stop=stop,
        ).run()
    finally:
        client.close()
        store.close()


@worker.command()
@click.option(
    "--consumer",
    default=None,
    help="Consumer name in the 'takeover' group (default: takeover-<host>-<pid>).",
)
@pass_cli
def takeover(cli: CliContext, consumer: str | None) -> None:
    """Move dead members' scheduled jobs to live members (Autotakeover).

    When a member turns dead and qwcontrol.clusterMode.autotakeover.enabled is true and
    the policy allows it, a proposal is published (at most one per member per
    autotakeover.sleep). After autotakeover.delay the worker checks the member is still
    dead, applies the mass-failure guard, and commits the ownership change in one
    transaction. Run two or more replicas: a proposal held by a dead replica is reclaimed.
    """
    _run_proposal_worker(cli, TakeoverWorker, "takeover", consumer)


@worker.command()
@click.option(
    "--consumer",
    default=None,
    help="Consumer name in the 'recovery' group (default: recovery-<host>-<pid>).",
)
@pass_cli
def recovery(cli: CliContext, consumer: str | None) -> None:
    """Recover dead members' running executions (Recover executions).

    When a member turns dead and qwcontrol.clusterMode.recoverExecutions.enabled is true
    and the policy allows it, a proposal is published (at most one per member per
    recoverExecutions.sleep). After recoverExecutions.delay the worker checks the member
    is still dead, marks its running executions incomplete and, for jobs with retries
    left, schedules the retry on an active, non-passive member (after the job's retry
    delay), in one transaction. Run two or more replicas: a proposal held by a dead
    replica is reclaimed.

    It also deletes executions that ended more than qwcontrol.executions.retention.days
    ago (0: never), in small batches, in a thread (one replica per hour).
    """
    _run_proposal_worker(cli, RecoveryWorker, "recovery", consumer, retention=True)


@worker.command()
@click.option(
    "--consumer",
    default=None,
    help="Consumer name in each receiver's 'notify:<name>' group (default: notify-<host>-<pid>).",
)
@pass_cli
def notify(cli: CliContext, consumer: str | None) -> None:
    """Deliver the cluster's events to the webhook receivers (docs/notifications.md).

    Each receiver (qwcontrol.notifications.webhooks.<name>.url and .events) has its own
    consumer group on the events stream and its own thread here: events are POSTed as
    JSON in the order they happened, signed with qwcontrol.notifications.secret when set,
    retried with exponential backoff (notifications.retry.initial, .max) until
    notifications.retry.horizon, then kept in the failed list (qwc notifications failed).
    A slow or dead receiver delays no other, and nothing else waits on this worker. Run
    two replicas: per receiver one delivers, the other takes over when it stops or dies.
    """
    from workers.notify.worker import NotifyWorker  # httpx: the other workers start without it

    settings = cli.settings()
    require_cluster_mode(settings)
    name = consumer or default_consumer_name("notify")
    stop = stop_on_signals()
    client = connect(settings, client_name=name)
    try:
        NotifyWorker(client, settings, consumer=name, stop=stop).run()
    finally:
        client.close()


def _run_proposal_worker(
    cli: CliContext,
    kind: type[TakeoverWorker] | type[RecoveryWorker],
    group: str,
    consumer: str | None,
    *,
    retention: bool = False,
) -> None:
    """Run one replica until SIGTERM/Ctrl-C (with the execution cleaner's thread when
    ``retention``); on the way out, let another replica take the proposals this one still
    holds."""
    settings = cli.settings()
    require_cluster_mode(settings)
    name = consumer or default_consumer_name(group)
    stop = stop_on_signals()
    client = connect(settings, client_name=name)
    store = open_store(settings)
    worker: ProposalWorker[Any] = kind(client, store, settings, consumer=name, stop=stop)
    cleaner = (
        RetentionCleaner(
            client,
            store,
            worker.keys,
            retention_days=settings.executions_retention_days,
            owner=name,
        ).start(stop)
        if retention
        else None
    )
    try:
        worker.run()
    finally:
        stop.set()
        hand_back(worker.redis, worker.stream, worker.group, worker.consumer, list(worker.held))
        if cleaner is not None:
            cleaner.join(timeout=5.0)
        client.close()
        store.close()


COMMANDS: list[click.Command] = [worker]
