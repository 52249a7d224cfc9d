"""Job specs, as ``qwc jobs add`` options or the entries of an import file give them, and
as the API will take them: validated, with every problem naming its entry and field.

A spec names exactly one executor (``command``, ``shell``, ``http`` or ``python``;
``workers.jobs.executor``), and may carry a ``timeout`` (seconds, None: none) and a
``concurrency`` policy (``allow|forbid|replace``, default ``forbid``). No I/O but reading
an import file.
"""

from __future__ import annotations

import json
import shlex
import uuid
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
from schemas.tables import NAME_LEN
from workers.jobs.executor import (
    CommandExecutor,
    Executor,
    HttpExecutor,
    PythonExecutor,
    Script,
    ShellExecutor,
)
from workers.store import DEFAULT_CONCURRENCY

__all__ = [
    "DEFAULT_PROJECT",
    "EXECUTOR_FIELDS",
    "IMPORT_SUFFIXES",
    "Concurrency",
    "JobSpec",
    "SpecError",
    "load_specs",
    "parse_spec",
]

DEFAULT_PROJECT = "default"
IMPORT_SUFFIXES = (".yaml", ".yml", ".json")
EXECUTOR_FIELDS = ("command", "shell", "http", "python")
Concurrency = Literal["allow", "forbid", "replace"]  # schemas.tables.CONCURRENCY_POLICIES


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
    project: str = Field(DEFAULT_PROJECT, min_length=1, max_length=NAME_LEN)
    group: str = Field("", max_length=NAME_LEN)
    owner: str | None = Field(None, validation_alias=AliasChoices("owner", "as"))
    retry: int = Field(0, ge=0)
    retry_delay: float = Field(0.0, ge=0, allow_inf_nan=False)
    enabled: bool = True

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        """A text is split like a shell would (quotes, escapes), but no shell runs it."""
        argv = shlex.split(value) if isinstance(value, str) else value
        if isinstance(argv, list | tuple) and not argv:
            raise ValueError("the command is empty")
        return argv

    @field_validator("python", mode="before")
    @classmethod
    def _callable_only(cls, value: Any) -> Any:
        """``python: pkg.module:function`` is short for ``{callable: …}`` (no kwargs)."""
        return {"callable": value} if isinstance(value, str) else value

    @field_validator("concurrency", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

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
    def _uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a member UUID") from None


def parse_spec(fields: Mapping[str, Any], where: str = "") -> JobSpec:
    """``fields`` as a ``JobSpec``. Raises ``SpecError`` with one line per bad field
    (``<where>field 'schedule': reason``)."""
    try:
        return JobSpec.model_validate(dict(fields))
    except ValidationError as exc:
        raise SpecError(_problems(exc, where)) from None
    except ValueError as exc:  # shlex: "No closing quotation"
        raise SpecError([f"{where}field 'command': {exc}"]) from None


def load_specs(file: Path) -> list[JobSpec]:
    """The jobs listed in ``file`` (.yaml, .yml or .json; a list of objects; empty: none).

    Raises ``SpecError`` listing every problem of every entry (``<file>: entry [i] field
    'x': reason``), or when the file cannot be read or parsed or holds no list.
    """
    suffix = file.suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise SpecError(
            [f"{file}: unknown file type {suffix or '(none)'!r}; use .yaml, .yml or .json"]
        )
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise SpecError([f"{file}: cannot read it: {exc}"]) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise SpecError([f"{file}: expected a list of jobs, found {type(data).__name__}"])
    specs: list[JobSpec] = []
    problems: list[str] = []
    for index, entry in enumerate(data):
        where = f"{file}: entry [{index}] "
        if not isinstance(entry, dict):
            problems.append(f"{where}is not an object: {entry!r}")
            continue
        try:
            specs.append(parse_spec(entry, where))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return specs


def _problems(exc: ValidationError, where: str) -> list[str]:
    """One line per error, naming the field (``http.url``); a rule between fields (one
    executor) names none."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        reason = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}field {field!r}: {reason}" if field else f"{where}{reason}")
    return lines
