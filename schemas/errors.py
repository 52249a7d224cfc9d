"""The one exception root of the project.

::

    QwcError
    ├── ConfigError (ValueError)        a setting is invalid: names key, file, line, value, allowed
    ├── DecodeError (ValueError)        a message could not be decoded; keeps the raw bytes
    ├── EmbeddedRedisError (RuntimeError)  the embedded Redis server could not be started/found
    ├── RecordingError (ValueError)     a recording (`qwc record`) is corrupt, truncated or too new
    ├── ScheduleError (ValueError)      a cron schedule or time zone is invalid, or never fires
    ├── ValueDetail (ValueError)        a refused setting value's detail (schemas.settings_types)
    ├── SpecError (ValueError)          a job spec is invalid: names entry and field
    │                                   (defined in workers.jobs.spec)
    ├── OwnerError (ValueError)         no member can be the owner (workers.jobops.owners)
    ├── TakeoverRefused (ValueError)    a manual takeover is refused (workers.takeover.manual)
    ├── CommandRefused                  no remote command was issued (workers.commands.issue)
    │   ├── BadTarget (ValueError)      the target member cannot receive commands (dead, unknown)
    │   ├── NoReceiver (LookupError)    no member may receive it under remoteExecution.policy
    │   └── ExecutionDisabled (ValueError)  the job's executions are disabled
    ├── ApiError                        a manager route's answer: status, message, code
    │                                   (workers.manager.errors)
    ├── BadRequest (ValueError)         a compatible API body cannot be used: 400
    │                                   (workers.manager.compat)
    ├── BodyTooLarge (HTTPException)    a request body over the manager's limit: 413
    │                                   (workers.manager.body_limit)
    └── StoreError (RuntimeError)       the SQL store refused an operation
        ├── NotFoundError (LookupError) a job, member or execution does not exist
        └── ConflictError               the store's state refuses it: a job of that name or
                                        id exists (``existing_id``), or the job's
                                        executions are disabled

Private classes used for control flow inside one module (``_FieldError`` of the Rundeck
import, ``_NotPending`` of a member's command reader) are ``QwcError`` too.
Builtins are subclassed where the meaning fits, so ``except ValueError`` still works.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ConflictError",
    "DecodeError",
    "EmbeddedRedisError",
    "NotFoundError",
    "QwcError",
    "RecordingError",
    "ScheduleError",
    "StoreError",
]

from dataclasses import dataclass


class QwcError(Exception):
    """Root of every error this project raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One invalid setting: where it came from and what would have been allowed."""

    key: str
    value: str | None
    allowed: str
    source: str  # "default", "environment", or a file path
    line: int | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        shown = "(missing)" if self.value is None else repr(self.value)
        return f"{where}: {self.key} = {shown}: {self.allowed}"


class ConfigError(QwcError, ValueError):
    """The settings are invalid. ``problems`` lists every invalid key, not only the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class DecodeError(QwcError, ValueError):
    """Bytes that are not a valid message. ``raw`` keeps them for the dead-letter stream."""

    def __init__(self, reason: str, raw: bytes) -> None:
        self.reason = reason
        self.raw = raw
        super().__init__(reason)


class EmbeddedRedisError(QwcError, RuntimeError):
    """The embedded Redis server of a data directory could not be started or reached."""


class RecordingError(QwcError, ValueError):
    """A recording file that cannot be replayed: not a recording, corrupt, truncated, or
    written by a newer format version. The message says which, and where."""


class ScheduleError(QwcError, ValueError):
    """A cron schedule that is not valid (the message names the field and the syntax it was
    read as) or never fires, or a time zone that is not known."""


class StoreError(QwcError, RuntimeError):
    """The SQL store refused an operation."""


class NotFoundError(StoreError, LookupError):
    """A job, member or execution that does not exist."""


class ConflictError(StoreError):
    """The store's state refuses the operation: a job of that project/group/name (or id)
    already exists — ``existing_id`` is that job's id —, or the job's executions are
    disabled."""

    def __init__(self, message: str, *, existing_id: str | None = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id
