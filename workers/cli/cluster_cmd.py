"""``qwc cluster up``: the whole topology of compose.yaml as local processes, in the
foreground."""

from __future__ import annotations

import os

import click

from schemas.errors import EmbeddedRedisError, StoreError
from schemas.settings import Settings
from workers.bus.embedded import EmbeddedRedis
from workers.cli.common import (
    CliContext,
    announce,
    fail,
    pass_cli,
    require_cluster_mode,
    stop_on_signals,
)
from workers.localcluster.cluster_plan import member_identities, topology
from workers.localcluster.cluster_up import (
    PageAccess,
    Supervisor,
    child_env,
    local_tokens,
    page_url,
    stop_timeout_s,
)
from workers.localcluster.local import LocalProcesses
from workers.store import open_store

__all__ = ["COMMANDS"]


@click.group()
def cluster() -> None:
    """Run a whole cluster on this machine."""


@cluster.command("up")
@click.option("--members", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--manager-host", default="127.0.0.1", show_default=True)
@click.option("--manager-port", default=4440, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-manager", is_flag=True, help="Do not start the Cluster Manager.")
@pass_cli
def up(
    cli: CliContext, members: int, manager_host: str, manager_port: int, no_manager: bool
) -> None:
    """Start the topology of compose.yaml as local processes; stop them on Ctrl-C/SIGTERM.

    Two liveness workers, two takeover workers, one recovery worker, a notify worker (the
    receivers of qwcontrol.notifications.webhooks.* and the jobs' own webhooks), the Cluster
    Manager (qwc manager on MANAGER_HOST:MANAGER_PORT) and MEMBERS reference nodes (node-1 …,
    with uuids that stay the same from one run to the next for the same
    qwcontrol.redis.prefix), each a `qwc` process with this process's settings: the
    config file, the QWC_* environment, the configured Redis and database or the embedded
    ones of the data directory. Their logs go to HOME/logs/<name>.log. The manager's
    tokens not configured (qwcontrol.manager.token; .readToken unless readOpen) are made
    up and kept in HOME/manager-tokens.properties (mode 0600); the page's address is
    printed with the read token in it (http://HOST:PORT/ui/#token=...): open it as it is
    and the page shows the cluster. A process that
    exits is restarted, unless it exits with status 2 (invalid settings) or three times
    in a row within 5 s of its start: then the cluster stops. On Ctrl-C or SIGTERM every
    process gets SIGTERM and up to qwcontrol.executions.drainTimeout + 10 s to stop (a
    node drains: its running executions get up to drainTimeout to finish). Exit status 0
    when every process stopped cleanly (status 0), 1 otherwise.
    """
    settings = cli.settings()
    require_cluster_mode(settings)
    started_redis = _prepare(settings)
    config = str(cli.config_path.resolve()) if cli.config_path else None
    log_dir = settings.home_dir / "logs"
    env = child_env(os.environ, config)
    access = None if no_manager else _tokens(settings)
    procs = LocalProcesses(env={**env, **(access.env if access else {})}, log_dir=log_dir)
    specs = topology(
        member_identities(members, prefix=settings.redis_prefix),
        manager=None if no_manager else (manager_host, manager_port),
        notify=1,  # the jobs' own webhooks may be added at any time
    )
    supervisor = Supervisor(procs, specs)
    stop = stop_on_signals()
    why: str | None = None
    try:
        supervisor.start_all()
        for spec in specs:
            pid = procs.procs[spec.label].pid
            announce(f"{spec.label:<12} pid {pid:<7} qwc {' '.join(spec.args)}")
        announce(f"cluster up: {len(specs)} processes, logs in {log_dir}; Ctrl-C stops")
        if access is not None:
            announce(_page_line(access, manager_host, manager_port))
        why = supervisor.run(stop)
    finally:
        codes = supervisor.stop(stop_timeout_s(settings.executions_drain_timeout_s))
        if started_redis:
            EmbeddedRedis(settings.home_dir).stop()
    _report(codes, why)


def _tokens(settings: Settings) -> PageAccess:
    """The manager's tokens (made up when the settings give none); exits 1 when their file
    in the data directory cannot be written."""
    try:
        return local_tokens(settings, settings.home_dir)
    except OSError as exc:
        fail(f"cluster up: the manager's tokens: {exc}")
        raise  # not reached


def _page_line(access: PageAccess, host: str, port: int) -> str:
    """The page's address for the operator (with the read token: open it as it is)."""
    url = page_url(host, port, access.read_token)
    where = f"; tokens made up for this cluster in {access.file}" if access.file else ""
    return f"cluster up: the page: {url} (carries the read token: keep it to yourself{where})"


def _prepare(settings: Settings) -> bool:
    """Start the embedded Redis if it is the one to use and not running (returns whether
    it was started here), and open the store once (migrating the embedded SQLite) so the
    processes do not race to; exits 1 when either cannot be reached."""
    started = False
    try:
        if settings.redis_url is None:
            server = EmbeddedRedis(settings.home_dir)
            started = server.url() is None
            server.ensure()
        open_store(settings).close()
    except (StoreError, EmbeddedRedisError) as exc:
        fail(f"cluster up: {exc}")
    return started


def _report(codes: dict[str, int | None], why: str | None) -> None:
    """Print how each process stopped; exit 1 unless each stopped with status 0."""
    unclean = {label: code for label, code in codes.items() if code != 0}
    if why is not None:
        announce(f"cluster up: stopped because {why}")
    for label, code in unclean.items():
        announce(f"cluster up: {label} stopped with status {code}")
    if not unclean:
        announce(f"cluster up: all {len(codes)} processes stopped cleanly")
    if why is not None or unclean:
        raise SystemExit(1)


COMMANDS: list[click.Command] = [cluster]
