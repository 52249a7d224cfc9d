"""Job specs, as ``qwc jobs add`` options or the entries of an import file give them, and as
the API will take them: validated, with every problem naming its entry and field.

A spec names exactly one executor (``command``, ``shell``, ``http`` or ``python``;
``workers.jobs.executor``), and may carry a ``timeout`` (seconds, None: none), a
``concurrency`` policy (``allow|forbid|replace``, default ``forbid``), a ``time_zone``
(IANA; None: the cluster default ``qwcontrol.scheduler.timeZone``), a ``misfire`` policy
(``skip|fire_once``, default ``skip``) with its ``misfire_grace`` (seconds; None: 60),
the enabled flags (``enabled``: the schedule's, ``execution_enabled``), a
``description``, the job's webhooks ``notify`` (``workers.jobs.hooks``), an ``id``
(the job's, when it must keep one: an import) and an ``owner``
(a member's UUID or name, resolved against the cluster by ``workers.jobops.owners``). An
import file may also be Rundeck's job YAML (``workers.jobs.rundeck``: recognised by its
``sequence`` entries). No I/O but reading an import file.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.cron import validate_cron
from schemas.errors import QwcError
from schemas.messages import canonical_uuid
from schemas.tables import NAME_LEN, UUID_LEN
from schemas.timezones import validate_time_zone
from workers.jobs.executor import (
    CommandExecutor,
    Executor,
    HttpExecutor,
    PythonExecutor,
    Script,
    ShellExecutor,
)
from workers.jobs.hooks import JobHooks
from workers.store import DEFAULT_CONCURRENCY, DEFAULT_MISFIRE

__all__ = [
    "DEFAULT_PROJECT",
    "DESCRIPTION_LEN",
    "EXECUTOR_FIELDS",
    "IMPORT_SUFFIXES",
    "MAX_MISFIRE_GRACE_S",
    "MIN_MISFIRE_GRACE_S",
    "Concurrency",
    "JobSpec",
    "Misfire",
    "SpecError",
    "load_specs",
    "parse_import_text",
    "parse_spec",
    "problems_of",
    "read_import_file",
    "specs_of",
]

DEFAULT_PROJECT = "default"
IMPORT_SUFFIXES = (".yaml", ".yml", ".json")
EXECUTOR_FIELDS = ("command", "shell", "http", "python")
DESCRIPTION_LEN = 65_536
MIN_MISFIRE_GRACE_S = 1.0
MAX_MISFIRE_GRACE_S = 604_800.0  # 7 days, as the longest duration setting
Concurrency = Literal["allow", "forbid", "replace"]  # schemas.tables.CONCURRENCY_POLICIES
Misfire = Literal["skip", "fire_once"]  # schemas.tables.MISFIRE_POLICIES
_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # a job id: no '/', so it never reads as a path


class SpecError(QwcError, ValueError):
    """Invalid job spec(s); ``problems`` has one line per problem, naming entry and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class JobSpec(BaseModel):
    """One job to create, from ``jobs add`` options or an entry of an import file: exactly
    one of ``command`` (argv, or a text split like a shell would), ``shell`` (a script for
    ``/bin/sh -c``), ``http`` (an object: method, url, expect_status, timeout, headers,
    body) and ``python`` (``pkg.module:function``, or an object: callable, kwargs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=NAME_LEN)
    command: tuple[str, ...] | None = None
    shell: Script | None = None
    http: HttpExecutor | None = None
    python: PythonExecutor | None = None
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)
    concurrency: Concurrency = DEFAULT_CONCURRENCY
    schedule: str | None = None
    time_zone: str | None = Field(
        None, validation_alias=AliasChoices("time_zone", "timezone", "timeZone")
    )
    misfire: Misfire = DEFAULT_MISFIRE
    # at least a second: a member fires a few ms after a time, never at it exactly
    misfire_grace: float | None = Field(
        None, ge=MIN_MISFIRE_GRACE_S, le=MAX_MISFIRE_GRACE_S, allow_inf_nan=False
    )
    project: str = Field(DEFAULT_PROJECT, min_length=1, max_length=NAME_LEN)
    group: str = Field("", max_length=NAME_LEN)
    owner: str | None = Field(
        None, max_length=NAME_LEN, validation_alias=AliasChoices("owner", "as")
    )
    retry: int = Field(0, ge=0)
    retry_delay: float = Field(0.0, ge=0, allow_inf_nan=False)
    enabled: bool = Field(True, validation_alias=AliasChoices("enabled", "schedule_enabled"))
    execution_enabled: bool = True
    description: str = Field("", max_length=DESCRIPTION_LEN)
    notify: JobHooks = Field(
        default_factory=JobHooks, validation_alias=AliasChoices("notify", "notification")
    )
    id: str | None = Field(None, min_length=1, max_length=UUID_LEN, pattern=_ID)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        """A text is split like a shell would (quotes, escapes), but no shell runs it."""
        argv = shlex.split(value) if isinstance(value, str) else value
        if isinstance(argv, list | tuple) and not argv:
            raise ValueError("the command is empty")
        return argv

    @field_validator("notify", mode="before")
    @classmethod
    def _no_hooks(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("python", mode="before")
    @classmethod
    def _callable_only(cls, value: Any) -> Any:
        """``python: pkg.module:function`` is short for ``{callable: …}`` (no kwargs)."""
        return {"callable": value} if isinstance(value, str) else value

    @field_validator("concurrency", "misfire", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else validate_time_zone(value)

    @model_validator(mode="after")
    def _one_executor(self) -> JobSpec:
        given = [f for f in EXECUTOR_FIELDS if getattr(self, f) is not None]
        if len(given) != 1:
            found = f" (found {', '.join(given)})" if given else ""
            raise ValueError(f"give exactly one executor: command, shell, http or python{found}")
        return self

    @property
    def executor(self) -> Executor:
        """The one executor the spec names."""
        if self.command is not None:
            return CommandExecutor(argv=self.command)
        if self.shell is not None:
            return ShellExecutor(script=self.shell)
        return self.http or self.python  # type: ignore[return-value]  # one is set

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else validate_cron(value)

    @field_validator("owner")
    @classmethod
    def _member(cls, value: str | None) -> str | None:
        """A member's UUID (made canonical) or name (resolved later against the members)."""
        if value is None or not value.strip():
            return None
        try:
            return canonical_uuid(value.strip())
        except ValueError:
            return value.strip()


def parse_spec(fields: Mapping[str, Any], where: str = "") -> JobSpec:
    """``fields`` as a ``JobSpec``. Raises ``SpecError`` with one line per bad field
    (``<where>field 'schedule': reason``)."""
    try:
        return JobSpec.model_validate(dict(fields))
    except ValidationError as exc:
        raise SpecError(problems_of(exc, where)) from None
    except ValueError as exc:  # shlex: "No closing quotation"
        raise SpecError([f"{where}field 'command': {exc}"]) from None


def read_import_file(file: Path) -> list[Any]:
    """The entries of an import file (.yaml, .yml or .json; a list; empty: none). Raises
    ``SpecError`` when the file cannot be read or parsed, or holds no list."""
    suffix = file.suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise SpecError(
            [f"{file}: unknown file type {suffix or '(none)'!r}; use .yaml, .yml or .json"]
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{file}: cannot read it: {exc}"]) from None
    return parse_import_text(text, str(file), json_text=suffix == ".json")


def parse_import_text(text: str, where: str, *, json_text: bool = False) -> list[Any]:
    """The entries of an import document (YAML, or JSON); see :func:`read_import_file`."""
    try:
        data = json.loads(text) if json_text else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError([f"{where}: cannot read it: {exc}"]) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise SpecError([f"{where}: expected a list of jobs, found {type(data).__name__}"])
    return data


def load_specs(file: Path) -> list[JobSpec]:
    """The jobs listed in ``file`` in this project's format (a list of objects).

    Raises ``SpecError`` listing every problem of every entry (``<file>: entry [i] field
    'x': reason``), or when the file cannot be read or parsed or holds no list.
    """
    return specs_of(read_import_file(file), str(file))


def specs_of(entries: list[Any], where: str, *, project: str | None = None) -> list[JobSpec]:
    """``entries`` (this project's format) as specs; ``project`` is that of entries naming
    none. Raises ``SpecError`` listing every problem of every entry."""
    specs: list[JobSpec] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        label = f"{where}: entry [{index}] "
        if not isinstance(entry, dict):
            problems.append(f"{label}is not an object: {entry!r}")
            continue
        if project is not None and "project" not in entry:
            entry = {**entry, "project": project}
        try:
            specs.append(parse_spec(entry, label))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return specs


def problems_of(exc: ValidationError, where: str) -> list[str]:
    """One line per error, naming the field (``http.url``); a rule between fields (one
    executor) names none."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        reason = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}field {field!r}: {reason}" if field else f"{where}{reason}")
    return lines
