"""What ``qwc jobs`` reads and prints, without I/O of its own: job specs (from options or
an import file, validated) and the JSON shapes of jobs and executions."""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.cron import validate_cron
from schemas.tables import NAME_LEN
from workers.liveness.listing import iso_utc
from workers.store import ExecutionRow, JobRow

__all__ = [
    "DEFAULT_PROJECT",
    "IMPORT_SUFFIXES",
    "JobSpec",
    "SpecError",
    "execution_json",
    "job_json",
    "load_specs",
    "parse_spec",
]

DEFAULT_PROJECT = "default"
IMPORT_SUFFIXES = (".yaml", ".yml", ".json")


class SpecError(ValueError):
    """Invalid job spec(s); ``problems`` has one line per problem, naming entry and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class JobSpec(BaseModel):
    """One job to create, from ``jobs add`` options or an entry of an import file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=NAME_LEN)
    command: tuple[str, ...]
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
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "entry"
        reason = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}field {field!r}: {reason}")
    return lines


def job_json(job: JobRow) -> dict[str, Any]:
    """A job as the JSON object ``qwc jobs list --json`` prints (times: epoch ms + ISO)."""
    return {
        "id": job.id,
        "name": job.name,
        "project": job.project,
        "group": job.group_name,
        "command": list(job.command),
        "schedule": job.schedule,
        "enabled": job.enabled,
        "owner_uuid": job.owner_uuid,
        "owner_epoch": job.owner_epoch,
        "retry_count": job.retry_count,
        "retry_delay_s": job.retry_delay_s,
        "next_fire_ms": job.next_fire_ms,
        "next_fire": iso_utc(job.next_fire_ms),
        "last_fire_ms": job.last_fire_ms,
        "last_fire": iso_utc(job.last_fire_ms),
        "modified_by": job.modified_by,
        "modified_ms": job.modified_ms,
        "created_ms": job.created_ms,
    }


def execution_json(run: ExecutionRow) -> dict[str, Any]:
    """An execution as the JSON object ``qwc executions --json`` prints."""
    return {
        "id": run.id,
        "job_id": run.job_id,
        "member_uuid": run.member_uuid,
        "status": run.status,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "retry_of": run.retry_of,
        "fire_ms": run.fire_ms,
        "fire_time": iso_utc(run.fire_ms),
        "owner_epoch": run.owner_epoch,
        "created_ms": run.created_ms,
        "started_ms": run.started_ms,
        "started": iso_utc(run.started_ms),
        "ended_ms": run.ended_ms,
        "ended": iso_utc(run.ended_ms),
        "exit_code": run.exit_code,
        "rq_job_id": run.rq_job_id,
        "output_tail": run.output_tail,
    }
