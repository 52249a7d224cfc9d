"""What a job runs: its executor, one of four kinds, validated (pydantic, frozen).

==========  ===================================================================================
kind        what runs
==========  ===================================================================================
command     ``argv``, without a shell (a text is split like a shell would, never run by one)
shell       ``script`` run by ``/bin/sh -c`` (pipes, redirections, ``$VARS``), as cron does
http        one HTTP request: ``method``, ``url``, ``expect_status`` (None: any 2xx), a
            timeout ``timeout_s``, optional ``headers`` and ``body``; the response's tail is
            the output
python      ``callable`` (``pkg.module:function``) called with the JSON object ``kwargs``
==========  ===================================================================================

In the store a job keeps its kind in ``scheduled_jobs.executor``, the argv of a ``command``
job in ``command`` (as before the other kinds existed) and the parameters of the other kinds
in ``executor_spec``: :func:`executor_columns` and :func:`executor_of` convert, in one place.
How each kind is run: ``workers.node.executors``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

__all__ = [
    "DEFAULT_HTTP_TIMEOUT_S",
    "HTTP_METHODS",
    "CommandExecutor",
    "Executor",
    "HttpExecutor",
    "PythonExecutor",
    "Script",
    "ShellExecutor",
    "describe",
    "executor_columns",
    "executor_of",
    "masked_executor",
]

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_HTTP_TIMEOUT_S = 30.0
_CALLABLE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# Header names whose values are shown as *** (job listings, the API): credentials.
_SECRET_HEADER = re.compile(r"auth|cookie|token|secret|key|password|session", re.IGNORECASE)
MASK = "***"


class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CommandExecutor(_Kind):
    """``argv`` run without a shell."""

    kind: Literal["command"] = "command"
    argv: tuple[str, ...] = Field(min_length=1)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("the script is empty")
    return value


Script = Annotated[str, AfterValidator(_not_blank)]


class ShellExecutor(_Kind):
    """``script`` run by ``/bin/sh -c``."""

    kind: Literal["shell"] = "shell"
    script: Script


class HttpExecutor(_Kind):
    """One HTTP request; succeeded when the status is ``expect_status`` (None: any 2xx)
    within ``timeout_s`` seconds."""

    kind: Literal["http"] = "http"
    method: str
    url: str
    expect_status: int | None = Field(None, ge=100, le=599)
    timeout_s: float = Field(DEFAULT_HTTP_TIMEOUT_S, gt=0, allow_inf_nan=False, alias="timeout")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        method = value.strip().upper()
        if method not in HTTP_METHODS:
            raise ValueError(f"{value!r} is not an HTTP method; one of {', '.join(HTTP_METHODS)}")
        return method

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value.strip())
            port = parts.port  # ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
        del port
        return value.strip()


class PythonExecutor(_Kind):
    """``callable`` (``pkg.module:function``) called with ``kwargs``."""

    kind: Literal["python"] = "python"
    callable: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("callable")
    @classmethod
    def _callable(cls, value: str) -> str:
        if not _CALLABLE.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not pkg.module:function")
        return value.strip()

    @field_validator("kwargs")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            decoded: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"keyword arguments must be plain JSON values: {exc}") from None
        return decoded


Executor = Annotated[
    CommandExecutor | ShellExecutor | HttpExecutor | PythonExecutor, Field(discriminator="kind")
]
_EXECUTOR: TypeAdapter[Executor] = TypeAdapter(Executor)


def executor_columns(executor: Executor) -> tuple[str, list[str], dict[str, Any]]:
    """The store's columns of ``executor``: (``executor``, ``command``, ``executor_spec``)."""
    if isinstance(executor, CommandExecutor):
        return "command", list(executor.argv), {}
    return executor.kind, [], executor.model_dump(mode="json", exclude={"kind"})


def executor_of(kind: str, command: Sequence[str], spec: Mapping[str, Any]) -> Executor:
    """The executor of a job row from its columns. Raises ``ValueError`` (pydantic's
    ``ValidationError``) when they do not describe a valid executor."""
    if kind == "command":
        return _command_executor(tuple(command))
    return _EXECUTOR.validate_python({**spec, "kind": kind})


@functools.lru_cache(maxsize=1024)
def _command_executor(argv: tuple[str, ...]) -> CommandExecutor:
    """One (frozen) executor per command line: a member runs the same jobs again and again,
    and validating the model each time cost it about 5 µs per execution."""
    return CommandExecutor(argv=argv)


def masked_executor(executor: Executor) -> dict[str, Any]:
    """``executor`` as a JSON object for listings: credentials in HTTP header values and in
    the URL are shown as ``***``."""
    shown: dict[str, Any] = executor.model_dump(mode="json")
    if isinstance(executor, HttpExecutor):
        shown["headers"] = {
            k: MASK if _SECRET_HEADER.search(k) else v for k, v in executor.headers.items()
        }
        shown["url"] = _mask_userinfo(executor.url)
    return shown


def _mask_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    return parts._replace(netloc=netloc).geturl()


def describe(executor: Executor) -> str:
    """One line for a table: the argv, ``sh -c …``, ``GET https://…``, ``python m:f``."""
    if isinstance(executor, CommandExecutor):
        return " ".join(executor.argv)
    if isinstance(executor, ShellExecutor):
        return f"sh -c {executor.script!r}"
    if isinstance(executor, HttpExecutor):
        return f"{executor.method} {_mask_userinfo(executor.url)}"
    return f"python {executor.callable}"
