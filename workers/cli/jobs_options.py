"""The options ``qwc jobs add`` and ``qwc jobs edit`` share, and the spec fields they make.

``add`` gives each option its default; ``edit`` gives none: an option not given leaves the
job's value as it is (:func:`spec_fields_of_options` leaves it out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from schemas.tables import CONCURRENCY_POLICIES, MISFIRE_POLICIES
from workers.jobs import DEFAULT_PROJECT, SpecError

__all__ = ["HOOK_OPTIONS", "job_options", "now_ms", "spec_fields_of_options"]

_F = TypeVar("_F", bound=Callable[..., Any])
ZONE_KEY = "qwcontrol.scheduler.timeZone"
# option parameter -> the job's hook trigger (workers.jobs.hooks), with what fires it
HOOK_OPTIONS = {
    "on_start": ("onstart", "an execution starts"),
    "on_success": ("onsuccess", "an execution succeeds"),
    "on_failure": ("onfailure", "an execution fails and no retry follows"),
    "on_retryable_failure": ("onretryablefailure", "an execution fails and a retry follows"),
    "on_timeout": ("ontimeout", "an execution is ended by its timeout"),
}


def now_ms() -> int:
    """This process's clock, epoch ms: when an operator's change is made."""
    return time.time_ns() // 1_000_000


def job_options(*, edit: bool) -> Callable[[_F], _F]:
    """The shared options, with the defaults of ``add`` unless ``edit``."""

    def default(value: object) -> object:
        return None if edit else value

    options = [
        click.option(
            "--command",
            default=None,
            help="Executor: the command, split like a shell would (quotes, escapes) into "
            "argv; it runs without a shell.",
        ),
        click.option(
            "--shell",
            default=None,
            metavar="TEXT",
            help="Executor: a script run by /bin/sh -c (pipes, redirections, $VARS), as "
            "cron runs it.",
        ),
        click.option(
            "--http",
            nargs=2,
            default=None,
            metavar="METHOD URL",
            help="Executor: one HTTP request (GET, POST, …); succeeded on the expected "
            "status; the answer's status line and body (head and tail) are the output.",
        ),
        click.option(
            "--http-expect-status",
            type=int,
            default=None,
            metavar="N",
            help="The status --http expects (default: any 2xx).",
        ),
        click.option(
            "--http-timeout",
            type=float,
            default=None,
            metavar="S",
            help="Seconds --http waits for the answer (default 30); no answer in time: failed.",
        ),
        click.option(
            "--python",
            "python_callable",
            default=None,
            metavar="pkg.module:function",
            help="Executor: a Python callable, imported and called in a child process of "
            "the member.",
        ),
        click.option(
            "--kwargs", default=None, metavar="JSON", help="Keyword arguments of --python."
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            metavar="S",
            help="End a run after S seconds (its whole process group; status timedout, "
            "retried like a failure). Default: no timeout.",
        ),
        click.option(
            "--concurrency",
            type=click.Choice(CONCURRENCY_POLICIES, case_sensitive=False),
            default=None,
            help="When a run is due while one is still running (on any member): forbid "
            "records the new one skipped (default), replace aborts the running one, allow "
            "overlaps.",
        ),
        click.option(
            "--schedule",
            default=None,
            metavar="CRON",
            help="Cron text: Unix 5 fields, 6 with seconds first, or Quartz (6 with a '?', "
            "or 7); see `qwc jobs next --help`. Without one (or '') the job runs only on "
            "demand.",
        ),
        click.option(
            "--time-zone",
            "time_zone",
            default=None,
            metavar="TZ",
            help=f"IANA zone the schedule is read in (Europe/Paris); '' or unset: {ZONE_KEY}.",
        ),
        click.option(
            "--misfire",
            type=click.Choice(MISFIRE_POLICIES, case_sensitive=False),
            default=None,
            help="Fire times missed (member paused or dead, store down): skip them "
            "(default), or fire_once: one catch-up execution for those within the grace.",
        ),
        click.option(
            "--misfire-grace",
            "misfire_grace",
            type=click.FloatRange(min=1, max=604800),
            default=None,
            metavar="S",
            help="How late a fire time may still run (default 60); older ones are skipped.",
        ),
        click.option(
            "--retry",
            type=click.IntRange(min=0),
            default=default(0),
            show_default=not edit,
            help="Retries after a failed or incomplete execution.",
        ),
        click.option(
            "--retry-delay",
            type=click.FloatRange(min=0),
            default=default(0.0),
            show_default=not edit,
            metavar="S",
            help="Seconds to wait before a retry.",
        ),
        click.option("--description", default=None, help="What the job is for."),
        *[
            click.option(
                "--" + param.replace("_", "-"),
                param,
                multiple=True,
                metavar="URL",
                help=f"Webhook POSTed the event when {when} (repeatable; signed and retried as "
                "the receivers' events, docs/notifications.md)."
                + (" Replaces this trigger's URLs; '' clears them." if edit else ""),
            )
            for param, (_, when) in HOOK_OPTIONS.items()
        ],
        click.option(
            "--project",
            default=default(DEFAULT_PROJECT),
            show_default=not edit,
            help="Project." + (" Moves the job." if edit else ""),
        ),
        click.option(
            "--group",
            default=default(""),
            help="Group within the project ('': none)." + (" Moves the job." if edit else ""),
        ),
        click.option(
            "--as",
            "owner",
            default=None,
            metavar="MEMBER",
            help="The member that "
            + ("modifies, hence owns," if edit else "creates, hence owns,")
            + " the job: its UUID or its name. Default: qwcontrol.server.uuid, else "
            + (
                "the owner is kept (its epoch still + 1)."
                if edit
                else "the active member owning the fewest jobs."
            ),
        ),
    ]

    def decorate(command: _F) -> _F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def spec_fields_of_options(options: dict[str, Any]) -> dict[str, Any]:
    """The spec fields of the options (pure): ``--http METHOD URL`` with
    ``--http-expect-status``/``--http-timeout`` make ``http``, ``--python`` with ``--kwargs``
    (a JSON object) make ``python``, ``--on-failure URL`` and the others make ``notify``
    (the triggers given only); options not given are left out. Raises ``SpecError``
    for an option that needs another, or ``--kwargs`` that is not JSON."""
    options = dict(options)
    given = {trigger: options.pop(param, None) for param, (trigger, _) in HOOK_OPTIONS.items()}
    hooks = {trigger: list(urls) for trigger, urls in given.items() if urls}
    fields = {k: v for k, v in options.items() if v is not None and not k.startswith("http_")}
    if hooks:
        fields["notify"] = hooks
    fields.pop("kwargs", None)
    http, python = fields.pop("http", None), fields.pop("python_callable", None)
    problems = [
        f"{flag} needs {needs}"
        for flag, given, needs, present in (
            ("--http-expect-status", options.get("http_expect_status"), "--http", http),
            ("--http-timeout", options.get("http_timeout"), "--http", http),
            ("--kwargs", options.get("kwargs"), "--python", python),
        )
        if given is not None and present is None
    ]
    if problems:
        raise SpecError(problems)
    if http is not None:
        method, url = http
        fields["http"] = {"method": method, "url": url}
        for option, name in (("http_expect_status", "expect_status"), ("http_timeout", "timeout")):
            if options.get(option) is not None:
                fields["http"][name] = options[option]
    if python is not None:
        fields["python"] = {"callable": python, "kwargs": _json_object(options.get("kwargs"))}
    return fields


def _json_object(text: str | None) -> Any:
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecError([f"field 'python.kwargs': --kwargs is not JSON: {exc}"]) from None
