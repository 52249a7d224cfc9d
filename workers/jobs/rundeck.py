"""Rundeck's job YAML (format v12, what ``rd jobs list -F yaml`` and the product's export
write), read as this project's job specs. Pure.

A file is Rundeck's when one of its entries has a ``sequence`` (every Rundeck job has one;
this project's entries never do). Each Rundeck job becomes the fields of one ``JobSpec``:

==============================================  ===========================================
Rundeck                                         here
==============================================  ===========================================
``name``, ``group``, ``description``            name, group (a path: ``a/b``), description
``project`` (else ``--project``)                project
``uuid`` (or ``id``)                            the job's id (``--update`` matches on it)
``schedule.crontab``                            schedule (Quartz text, as written)
``schedule.time/month/year/weekday/dayofmonth``  schedule: the Quartz text Rundeck makes of
                                                them (``sec min hour dom month dow year``)
``timeZone``                                    time_zone
``scheduleEnabled``, ``executionEnabled``       enabled, execution_enabled (default true)
``multipleExecutions``                          concurrency ``allow`` (true) / ``forbid``
``timeout`` (``120``, ``1h30m``, ``6h 30m``)    timeout (seconds)
``retry`` (``3``) or ``retry.retry/delay``      retry, retry_delay (seconds)
``sequence.commands``: one step                 ``exec: TEXT`` -> shell TEXT (Rundeck runs it
                                                through the node's shell); ``script`` ->
                                                shell, or ``command: [sh, -c, script,
                                                script, args…]`` with ``args`` (a ``#!``
                                                line of bash, dash, ksh or zsh runs that
                                                shell); ``scriptfile`` + ``args`` ->
                                                command [file, args…]
``notification.<trigger>.urls``, or             notify: the job's webhooks per trigger
``.webhook.urls`` (a comma-separated text or a  (``onstart``, ``onsuccess``, ``onfailure``,
list), for ``onstart|onsuccess|onfailure|``     ``onretryablefailure``; ``ontimeout`` too,
``onretryablefailure``                          which Rundeck has not)
==============================================  ===========================================

What cannot be represented is never dropped silently. It either refuses the job (the
import stops, nothing is written, every problem is listed with its entry and field): no
step or several steps, a step of another kind (``jobref``, ``scripturl``, plugin steps),
``scriptInterpreter``, a script with another interpreter, values referring to job options
(``${option.x}``), a bad duration, schedule or zone. Or it is imported without the field,
with a warning naming the job and the field (:class:`Converted.dropped`): ``nodefilters``
(the command runs on the member that fires it, not on Rundeck's nodes), ``options``,
the notifications that are not webhooks (``recipients``, ``email``, ``plugin``; a trigger
such as ``onavgduration``), a webhook URL with property tokens (``${execution.id}``: not
expanded here; the event's body carries the execution), a webhook's other settings
(``httpMethod``, ``format``), non-empty ``plugins``, ``loglimit*``, ``errorhandler``,
``orchestrator``, non-empty ``schedules``, and any field this importer does not know.
Fields that change nothing here are passed over without a word: ``loglevel``,
``defaultTab``, ``nodeFilterEditable``, ``nodesSelectedByDefault``, ``keepgoing`` and
``strategy`` (one step), empty ``plugins``/``options``/``schedules``/``notification``,
``scheduled``, ``notifyAvgDurationThreshold``, a step's ``description``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import QwcError
from workers.jobs.hooks import HOOK_TRIGGERS
from workers.jobs.spec import SpecError

__all__ = [
    "Converted",
    "convert_job",
    "is_rundeck",
    "parse_duration_s",
    "structured_schedule",
]

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([dhms])", re.IGNORECASE)
_SHELLS = ("sh", "bash", "dash", "ksh", "zsh")
_HANDLED = {
    "name",
    "group",
    "description",
    "project",
    "uuid",
    "id",
    "schedule",
    "timeZone",
    "scheduleEnabled",
    "executionEnabled",
    "multipleExecutions",
    "timeout",
    "retry",
    "sequence",
    "notification",
}
_HARMLESS = {
    "loglevel",
    "defaultTab",
    "nodeFilterEditable",
    "nodesSelectedByDefault",
    "scheduled",
    "notifyAvgDurationThreshold",
}
_EMPTY_IS_HARMLESS = {"plugins", "options", "schedules", "notification"}
_WHY_DROPPED = {
    "nodefilters": "node filters are not supported: the command runs on the member that fires "
    "the job, not on Rundeck's nodes",
    "options": "job options are not supported: references to them in the command are not expanded",
    "plugins": "job plugins are not supported",
    "loglimit": "output is bounded by qwcontrol.executions.output.maxBytes instead",
    "orchestrator": "orchestrators are not supported",
    "schedules": "schedule definitions (calendars) are not supported",
}


@dataclass(frozen=True)
class Converted:
    """One Rundeck job as spec fields, and the fields it lost (one line each, naming the
    field and why)."""

    fields: dict[str, Any]
    dropped: list[str] = field(default_factory=list)


def is_rundeck(entries: list[Any]) -> bool:
    """Whether an import file's ``entries`` are Rundeck jobs (one has a ``sequence``)."""
    return any(isinstance(e, Mapping) and "sequence" in e for e in entries)


def convert_job(job: Mapping[str, Any], where: str = "") -> Converted:
    """The spec fields of Rundeck job ``job`` (see the module docstring). Raises
    ``SpecError`` with one line per field that refuses the job (``<where>field 'x': …``)."""
    fields: dict[str, Any] = {}
    problems: list[str] = []
    steps = (
        ("name", lambda: _copy(job, "name", fields)),
        ("group", lambda: _copy(job, "group", fields, default="")),
        ("description", lambda: _copy(job, "description", fields, default="")),
        ("project", lambda: _copy(job, "project", fields)),
        ("uuid", lambda: _identity(job, fields)),
        ("schedule", lambda: _schedule(job, fields)),
        ("timeZone", lambda: _copy(job, "timeZone", fields, to="time_zone")),
        ("scheduleEnabled", lambda: _flag(job, "scheduleEnabled", "enabled", fields)),
        ("executionEnabled", lambda: _flag(job, "executionEnabled", "execution_enabled", fields)),
        ("multipleExecutions", lambda: _concurrency(job, fields)),
        ("timeout", lambda: _timeout(job, fields)),
        ("retry", lambda: _retry(job, fields)),
        ("sequence", lambda: _sequence(job, fields)),
        ("notification", lambda: _notification(job, fields)),
    )
    dropped: list[str] = []
    for name, step in steps:
        try:
            dropped += step() or []
        except ValueError as exc:
            problems.append(f"{where}field {_field_of(exc, name)!r}: {exc.args[0]}")
    if problems:
        raise SpecError(problems)
    dropped += _dropped(job)
    return Converted(fields, [f"{where}{line}" for line in dropped])


class _FieldError(QwcError, ValueError):
    """A problem with a sub-field (``sequence.commands[0].script``)."""

    def __init__(self, message: str, field_name: str) -> None:
        super().__init__(message)
        self.field_name = field_name


def _field_of(exc: ValueError, default: str) -> str:
    return exc.field_name if isinstance(exc, _FieldError) else default


def _copy(
    job: Mapping[str, Any],
    key: str,
    fields: dict[str, Any],
    *,
    to: str | None = None,
    default: str | None = None,
) -> None:
    value = job.get(key, default)
    if value is None:
        return
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a text, found {type(value).__name__}")
    fields[to or key] = str(value)


def _identity(job: Mapping[str, Any], fields: dict[str, Any]) -> None:
    uuid, old_id = job.get("uuid"), job.get("id")
    if uuid is not None and old_id is not None and str(uuid) != str(old_id):
        raise ValueError(f"uuid {uuid!r} and id {old_id!r} differ")
    if uuid is not None or old_id is not None:
        fields["id"] = str(uuid if uuid is not None else old_id)


def _flag(job: Mapping[str, Any], key: str, to: str, fields: dict[str, Any]) -> None:
    if key in job:
        fields[to] = _boolean(job[key])


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"expected true or false, found {value!r}")


def _concurrency(job: Mapping[str, Any], fields: dict[str, Any]) -> None:
    multiple = _boolean(job["multipleExecutions"]) if "multipleExecutions" in job else False
    fields["concurrency"] = "allow" if multiple else "forbid"


def parse_duration_s(value: Any) -> float:
    """A Rundeck duration in seconds: a number (seconds), or units ``d h m s`` (``1h30m``,
    ``6h 30m``, ``1h1m1s``). Raises ``ValueError`` naming the value (an option reference
    ``${option.x}`` included: options are not supported)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if "${" in text:
        raise ValueError(f"{text!r} refers to a job option; options are not supported")
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"{text!r} is not a duration: seconds, or like 1h30m, 6h 30m, 2d")
    return float(sum(float(n) * _UNITS[unit.lower()] for n, unit in parts))


def _timeout(job: Mapping[str, Any], fields: dict[str, Any]) -> None:
    if job.get("timeout") not in (None, ""):
        seconds = parse_duration_s(job["timeout"])
        if seconds > 0:
            fields["timeout"] = seconds


def _retry(job: Mapping[str, Any], fields: dict[str, Any]) -> None:
    value: Any = job.get("retry")
    if value in (None, ""):
        return
    delay: Any = None
    if isinstance(value, Mapping):
        value, delay = value.get("retry"), value.get("delay")
    text = str(value).strip()
    if "${" in text:
        raise ValueError(f"{text!r} refers to a job option; options are not supported")
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number of retries")
    fields["retry"] = int(text)
    if delay not in (None, ""):
        try:
            fields["retry_delay"] = parse_duration_s(delay)
        except ValueError as exc:
            raise _FieldError(str(exc), "retry.delay") from None


def _schedule(job: Mapping[str, Any], fields: dict[str, Any]) -> None:
    schedule = job.get("schedule")
    if schedule is None:
        return
    if not isinstance(schedule, Mapping):
        raise ValueError("expected an object: crontab, or time/month/year/weekday/dayofmonth")
    if "crontab" in schedule:
        fields["schedule"] = str(schedule["crontab"]).strip()
        return
    fields["schedule"] = structured_schedule(schedule)


def structured_schedule(schedule: Mapping[str, Any]) -> str:
    """The Quartz text Rundeck makes of a structured schedule: ``seconds minute hour
    day-of-month month day-of-week year``, ``?`` in the day field not given (day-of-month
    when neither is). Raises ``ValueError`` when both day fields are given."""
    time = schedule.get("time") or {}
    weekday = (schedule.get("weekday") or {}).get("day")
    monthday = (schedule.get("dayofmonth") or {}).get("day")
    if weekday not in (None, "", "*") and monthday not in (None, ""):
        raise ValueError("weekday and dayofmonth are mutually exclusive")
    dom, dow = (str(monthday), "?") if monthday not in (None, "") else ("?", str(weekday or "*"))
    parts = [
        time.get("seconds", "0"),
        time.get("minute", "0"),
        time.get("hour", "0"),
        dom,
        schedule.get("month", "*"),
        dow,
        schedule.get("year", "*"),
    ]
    return " ".join(str(p).strip().upper() or "*" for p in parts)


def _sequence(job: Mapping[str, Any], fields: dict[str, Any]) -> list[str]:
    sequence: Mapping[str, Any] = job.get("sequence") or {}
    commands = sequence.get("commands") if isinstance(sequence, Mapping) else None
    if not isinstance(commands, list) or not commands:
        raise _FieldError("no step: a job needs one command", "sequence.commands")
    if len(commands) > 1:
        raise _FieldError(
            f"{len(commands)} steps: only a job of one step can be imported (a workflow of "
            "several is not supported; join them in one script)",
            "sequence.commands",
        )
    step = commands[0]
    if not isinstance(step, Mapping):
        raise _FieldError("a step must be an object", "sequence.commands[0]")
    fields.update(_step(step))
    dropped = []
    if "errorhandler" in step:
        dropped.append(
            "field 'sequence.commands[0].errorhandler' not imported: error handlers are not "
            "supported"
        )
    if sequence.get("pluginConfig"):
        dropped.append("field 'sequence.pluginConfig' not imported: workflow plugins")
    return dropped


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    where = "sequence.commands[0]"
    args = shlex.split(str(step.get("args") or ""))
    if step.get("scriptInterpreter"):
        raise _FieldError("a script interpreter is not supported", f"{where}.scriptInterpreter")
    if "exec" in step:
        return {"shell": str(step["exec"])}
    if "script" in step:
        return _script(str(step["script"]), args)
    if "scriptfile" in step:
        return {"command": [str(step["scriptfile"]), *args]}
    kind = next((k for k in ("jobref", "scripturl", "type") if k in step), "?")
    raise _FieldError(
        f"a step of kind {kind!r} is not supported: exec, script and scriptfile are",
        f"{where}.{kind}",
    )


def _script(script: str, args: list[str]) -> dict[str, Any]:
    """A ``script`` step: ``/bin/sh -c`` it, or the shell its ``#!`` line names."""
    shell = ["/bin/sh"]
    first = script.lstrip().splitlines()[0] if script.strip() else ""
    if first.startswith("#!"):
        shell = first[2:].split()
        program = shell[-1] if shell[:1] and shell[0].endswith("/env") else shell[0]
        if len(shell) > 2 or program.rsplit("/", 1)[-1] not in _SHELLS:
            raise _FieldError(
                f"a script run by {first[2:].strip()!r} is not supported: only sh, bash, "
                "dash, ksh or zsh scripts (or use scriptfile)",
                "sequence.commands[0].script",
            )
    if shell == ["/bin/sh"] and not args:
        return {"shell": script}
    return {"command": [*shell, "-c", script, "script", *args]}


def _url_list(value: Any, where: str) -> list[str]:
    """Rundeck's ``urls``: a comma-separated text, or a list of texts."""
    if isinstance(value, str):
        return [u.strip() for u in value.split(",") if u.strip()]
    if isinstance(value, list) and all(isinstance(u, str) for u in value):
        return [u.strip() for u in value if u.strip()]
    raise _FieldError(f"expected URLs (a comma-separated text or a list), found {value!r}", where)


def _notification(job: Mapping[str, Any], fields: dict[str, Any]) -> list[str]:
    """The webhooks of ``notification`` as ``notify``; a line for each part left out. A URL
    that is not http(s) refuses the job (``parse_spec`` names the trigger)."""
    value = job.get("notification")
    if not value:
        return []
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a map of triggers, found {type(value).__name__}")
    hooks: dict[str, list[str]] = {}
    dropped: list[str] = []
    for trigger, settings in value.items():
        where = f"notification.{trigger}"
        if trigger not in HOOK_TRIGGERS:
            dropped.append(f"field {where!r} not imported: no such trigger here")
            continue
        parts = settings if isinstance(settings, list) else [settings]  # onstart: [plugin…]
        for part in parts:
            if not isinstance(part, Mapping):
                raise _FieldError(f"expected a map, found {part!r}", where)
            for key, setting in part.items():
                if key == "urls":
                    urls = _url_list(setting, f"{where}.urls")
                elif key == "webhook" and isinstance(setting, Mapping):
                    urls = _url_list(setting.get("urls", ""), f"{where}.webhook.urls")
                    dropped += [
                        f"field '{where}.webhook.{k}' not imported: the event is POSTed as "
                        "JSON (docs/notifications.md)"
                        for k in setting
                        if k != "urls"
                    ]
                else:
                    dropped.append(f"field '{where}.{key}' not imported: only webhooks are")
                    continue
                for url in urls:
                    if "${" in url:
                        dropped.append(
                            f"field '{where}' URL {url!r} not imported: property tokens are "
                            "not expanded (the event's body carries the execution)"
                        )
                    else:
                        hooks.setdefault(trigger, []).append(url)
    if hooks:
        fields["notify"] = hooks
    return dropped


def _dropped(job: Mapping[str, Any]) -> list[str]:
    """One line for each field of ``job`` that is not imported (see the module docstring)."""
    lines = []
    for key, value in job.items():
        if key in _HANDLED or key in _HARMLESS:
            continue
        if key in _EMPTY_IS_HARMLESS and not value:
            continue
        if key == "plugins" and isinstance(value, Mapping) and not any(value.values()):
            continue
        why = _WHY_DROPPED.get(
            "loglimit" if key.startswith("loglimit") else key,
            "unknown to this importer",
        )
        lines.append(f"field {key!r} not imported: {why}")
    return lines
