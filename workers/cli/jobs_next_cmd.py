"""``qwc jobs next``: the next fire times of a job, or of a cron text, in its zone and in UTC.

Registered on the ``jobs`` group by :mod:`workers.cli.jobs_cmd`. The computation is
:func:`schemas.cron.fire_times_ms`; this module resolves the job and its zone and prints.
"""

from __future__ import annotations

__all__ = ["next_command"]

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

from schemas.cron import cron_syntax, fire_times_ms
from schemas.errors import NotFoundError, ScheduleError
from schemas.settings import Settings
from schemas.timezones import time_zone, validate_time_zone
from workers.cli.common import CliContext, echo_json, fail, opened_store, pass_cli
from workers.liveness.listing import iso_utc
from workers.store import JobRow, find_job

_ZONE_KEY = "qwcontrol.scheduler.timeZone"


@dataclass(frozen=True)
class _Target:
    """What to compute: a schedule in a zone, and where both came from."""

    schedule: str
    zone: str
    zone_from: str  # "job", "option" or the cluster default's key
    job: JobRow | None = None


@click.command("next")
@click.argument("job_ref", metavar="[JOB]", required=False)
@click.option(
    "--schedule", default=None, metavar="CRON", help="A cron text to check instead of a job."
)
@click.option(
    "--time-zone",
    "zone",
    default=None,
    metavar="TZ",
    help=f"With --schedule: the IANA zone to read it in (default: {_ZONE_KEY}).",
)
@click.option(
    "--count",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="How many fire times.",
)
@click.option(
    "--after",
    default=None,
    metavar="TIME",
    help="Count from this ISO 8601 time instead of now (without an offset: local time of "
    "the zone), e.g. 2025-10-26T00:00 to see a daylight-saving change.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_cli
def next_command(
    cli: CliContext,
    job_ref: str | None,
    schedule: str | None,
    zone: str | None,
    count: int,
    after: str | None,
    as_json: bool,
) -> None:
    """Print the next fire times of JOB (an id, or PROJECT/NAME or PROJECT/GROUP/NAME), or
    of --schedule CRON, in the schedule's time zone and in UTC.

    \b
    Syntaxes, recognised by the number of fields and '?':
      5 fields             Unix: minute hour day-of-month month day-of-week
                           (day-of-week 0-7 or SUN-SAT, 0 and 7 = Sunday)
      6 fields, no '?'     seconds first: second + the 5 Unix fields (Unix days)
      6 with a '?', or 7   Quartz: second minute hour day-of-month month
                           day-of-week [year]; '?' in exactly one day field;
                           day-of-week 1-7 or SUN-SAT, 1 = Sunday, 7 = Saturday;
                           L, L-3, 15W, LW in day-of-month; 6L, 6#3 in day-of-week
    So '0 0 12 ? * 2' is Monday noon (Quartz) and '0 0 12 * * 2' Tuesday noon.

    \b
    A job is read in its own time zone (the cluster default qwcontrol.scheduler.timeZone
    until it has one); --schedule in --time-zone, else that default. Across a
    daylight-saving change, a local time that does not exist fires when the clock jumps,
    one that exists twice fires once (the first), and an expression whose hour field is
    '*' fires at every real instant it matches. See docs/schedules.md.

    Exits 2 for an unknown job, a job without a schedule, a bad cron text, zone or time
    (the message names the field), or a schedule that never fires again; 1 when the store
    is unreachable.
    """
    settings = cli.settings()
    target = _target(cli, settings, job_ref, schedule, zone)
    after_ms = _after_ms(after, target.zone) if after else int(time.time() * 1000)
    try:
        times = fire_times_ms(target.schedule, after_ms, count, target.zone)
    except ScheduleError as exc:
        fail(str(exc), 2)
        return
    if not times:
        fail(f"cron schedule {target.schedule!r} never fires after {iso_utc(after_ms)}", 2)
    if as_json:
        echo_json(_json(target, after_ms, times))
    else:
        click.echo(_text(target, after_ms, times, count))


def _target(
    cli: CliContext, settings: Settings, job_ref: str | None, schedule: str | None, zone: str | None
) -> _Target:
    """The schedule and zone to compute; exits 2 on a wrong combination or unknown input."""
    if (job_ref is None) == (schedule is None):
        fail("pass JOB or --schedule CRON (one of them)", 2)
    try:
        if schedule is not None:
            if zone is not None:
                return _Target(schedule, validate_time_zone(zone), "option")
            return _Target(schedule, settings.scheduler_time_zone, _ZONE_KEY)
        if zone is not None:
            fail("--time-zone goes with --schedule: a job is read in its own zone", 2)
        with opened_store(cli) as store:
            job = find_job(store, str(job_ref))
    except (ScheduleError, NotFoundError) as exc:
        fail(str(exc), 2)
        raise  # unreachable: fail() exits
    if not job.schedule:
        fail(f"job {job.path} (id {job.id}) has no schedule: it runs only on demand", 2)
    job_zone, zone_from = _job_zone(job, settings)
    return _Target(str(job.schedule), job_zone, zone_from, job)


def _job_zone(job: JobRow, settings: Settings) -> tuple[str, str]:
    """The zone ``job`` is scheduled in, and where it comes from: its own ``time_zone``,
    else the cluster default."""
    if job.time_zone:
        return job.time_zone, "job"
    return settings.scheduler_time_zone, _ZONE_KEY


def _after_ms(text: str, zone: str) -> int:
    """``--after`` as epoch ms: ISO 8601, local time of ``zone`` when it has no offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--after {text!r} is not an ISO 8601 time (e.g. 2025-10-26T00:00 or …Z)", 2)
        raise  # unreachable: fail() exits
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=time_zone(zone))
    return int(moment.timestamp() * 1000)


def _local(fire_ms: int, zone: str) -> datetime:
    return datetime.fromtimestamp(fire_ms / 1000, time_zone(zone))


def _json(target: _Target, after_ms: int, times: list[int]) -> dict[str, Any]:
    job = target.job
    return {
        "job_id": job.id if job else None,
        "job": job.path if job else None,
        "enabled": job.enabled if job else None,
        "schedule": target.schedule,
        "syntax": cron_syntax(target.schedule).value,
        "time_zone": target.zone,
        "time_zone_from": target.zone_from,
        "after_ms": after_ms,
        "after": iso_utc(after_ms),
        "fires": [
            {
                "fire_ms": ms,
                "local": _local(ms, target.zone).isoformat(),
                "utc": iso_utc(ms),
            }
            for ms in times
        ],
    }


def _text(target: _Target, after_ms: int, times: list[int], count: int) -> str:
    job = target.job
    what = f"job {job.path} (id {job.id}): " if job else ""
    disabled = " (disabled: not fired)" if job and not job.enabled else ""
    zone_from = "" if target.zone_from == "option" else f", from {target.zone_from}"
    lines = [
        f"{what}{target.schedule!r} ({cron_syntax(target.schedule).label}) in "
        f"{target.zone}{zone_from}{disabled}; after {iso_utc(after_ms)}:"
    ]
    for ms in times:
        local = _local(ms, target.zone)
        lines.append(f"  {local.isoformat()} {local.tzname():<6} = {iso_utc(ms)}")
    if len(times) < count:
        lines.append(f"  (no more fire times: {len(times)} of {count})")
    return "\n".join(lines)
