"""``qwc record`` and ``qwc replay``: incidents recorded, then replayed on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import redis

from schemas.errors import ConfigError, RecordingError, StoreError
from workers.cli.common import CliContext, fail, pass_cli

__all__ = ["COMMANDS", "parse_time_ms"]


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds (digits), or an ISO 8601 time (UTC unless it names an offset).

    Raises ValueError for anything else."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


class _Time(click.ParamType[int]):
    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time_ms(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither epoch milliseconds nor an ISO 8601 time", param, ctx)


@click.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The recording file to write.",
)
@click.option(
    "--since",
    type=_Time(),
    default=None,
    help="Start of the window: epoch ms or ISO time (default: the oldest heartbeat).",
)
@click.option(
    "--until",
    type=_Time(),
    default=None,
    help="End of the window: epoch ms or ISO time (default: now, Redis clock).",
)
@pass_cli
def record(cli: CliContext, out: Path, since: int | None, until: int | None) -> None:
    """Record the cluster's streams and a snapshot of the store into one file.

    \b
    Writes the heartbeats, membership, takeover, recovery and command streams (entry ids
    and raw payloads; from a warm-up before --since, so the replay knows each member's
    last heartbeat when the window opens), the jobs and their owners, the executions the
    heartbeats list as running, the takeover and recovery audit rows, and the effective
    qwcontrol.clusterMode.* settings, compressed. ISO times without an offset are UTC.
    Redis keeps about 100,000 entries per stream: older ones cannot be recorded.
    Replay it with `qwc replay FILE`.
    """
    from workers.bus.connect import connect
    from workers.replay.events import iso_ms
    from workers.replay.record import record as record_streams
    from workers.store import open_store

    settings = cli.settings()
    if since is not None and until is not None and since > until:
        fail("--since is after --until", 2)
    client = connect(settings)
    try:
        store = open_store(settings)
        try:
            result = record_streams(client, store, settings, out, since_ms=since, until_ms=until)
        finally:
            store.close()
    except (redis.RedisError, StoreError, OSError) as exc:
        fail(f"record failed: {exc}")
        return
    finally:
        client.close()
    for warning in result.warnings:
        click.echo(f"qwc: warning: {warning}", err=True)
    h = result.header
    counts = ", ".join(f"{n} {stream}" for stream, n in sorted(result.entries.items()))
    click.echo(
        f"recorded {iso_ms(h.since_ms)} .. {iso_ms(h.until_ms)} (entries from "
        f"{iso_ms(h.start_ms)}): {counts or 'no entries'}; {result.jobs} job(s); "
        f"{out.stat().st_size} bytes -> {out}"
    )


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A qwcontrol-config.properties whose keys override the recorded settings.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one setting (repeatable): a key of qwcontrol-config.properties and its value.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--diff",
    "with_diff",
    is_flag=True,
    help="Compare the replayed decisions with the recorded ones; exit 1 if they differ.",
)
@click.option(
    "--tolerance-ms",
    type=click.IntRange(min=0),
    default=None,
    help="How much later than the replay a recorded decision may be (default 1000).",
)
def replay(
    file: Path,
    config_path: Path | None,
    sets: tuple[str, ...],
    as_json: bool,
    with_diff: bool,
    tolerance_ms: int | None,
) -> None:
    """Replay a recording through the workers' decisions on a virtual clock.

    \b
    The heartbeats are fed in entry id order to the liveness rules, the state changes to
    the takeover and recovery decisions, with time taken from the entry ids; prints the
    timeline: state changes, proposals, cancellations, takeovers (with the jobs that
    would move) and recoveries. Settings: those recorded, then --config's keys, then
    --set (a what-if); the environment and ./qwcontrol-config.properties are not read.
    The same file and settings always print the same bytes.
    Exit status: 0; 1 when --diff finds a difference; 2 for a bad file or setting.
    """
    from workers.replay.diff import DEFAULT_TOLERANCE_MS, diff, diff_lines
    from workers.replay.engine import replay as run_replay
    from workers.replay.fileformat import read_recording
    from workers.replay.report import report_json, report_text
    from workers.replay.settings import replay_settings

    try:
        with read_recording(file) as rec:
            settings = replay_settings(
                rec.header.settings, config=config_path, sets=sets, recording=file.name
            )
            result = run_replay(rec, settings)
            tol = DEFAULT_TOLERANCE_MS if tolerance_ms is None else tolerance_ms
            early_ms = round(settings.heartbeat_interval_s * 1000)
            found = (
                diff(rec, result.events, tolerance_ms=tol, early_ms=early_ms) if with_diff else None
            )
    except RecordingError as exc:
        fail(str(exc), 2)
        return
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    if as_json:
        click.echo(report_json(result, found))
    else:
        lines = diff_lines(found, result.names) if found is not None else None
        click.echo(report_text(result, lines), nl=False)
    if found is not None and found["differences"]:
        raise SystemExit(1)


COMMANDS = [record, replay]
