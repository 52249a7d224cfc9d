"""The value types of the settings: policies, seconds, flags, UUID lists, URLs, names, sizes.

Each type is an ``Annotated`` alias that parses the text of a properties file or an
environment variable (``"0.2"``, ``"True"``, ``"RoundRobin"``, ``"a,b"``) as well as the
Python value given in code, and carries an :class:`Allowed` sentence that
:class:`schemas.errors.ConfigProblem` shows when a value is refused. :class:`Key` names
the property key (and its environment variables) of a settings field.
:mod:`schemas.settings` re-exports the policies; use them from there.
"""

from __future__ import annotations

__all__ = [
    "MAX_BODY_BYTES_RANGE",
    "MAX_DURATION_S",
    "MAX_THREAD_COUNT",
    "MIN_INTERVAL_S",
    "Allowed",
    "BodyBytes",
    "DatabaseUrl",
    "DelaySeconds",
    "DrainSeconds",
    "Flag",
    "Fraction",
    "HeartbeatSecret",
    "HomeDir",
    "IntervalSeconds",
    "JobSeriesCap",
    "Key",
    "MemberName",
    "MemberUuid",
    "OptionalUuid",
    "OutputBytes",
    "RecoverPolicy",
    "RecoverPolicyValue",
    "RedisPrefix",
    "RedisUrl",
    "RemoteExecutionPolicy",
    "RemoteExecutionPolicyValue",
    "RetentionDays",
    "RqRedisUrl",
    "TagList",
    "TakeoverPolicy",
    "TakeoverPolicyValue",
    "ThreadCount",
    "TimeZoneName",
    "Token",
    "UuidList",
    "ValueDetail",
]

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, AllowInfNan, BeforeValidator, SecretStr

from schemas.errors import QwcError, ScheduleError
from schemas.messages import MEMBER_NAME_MAX_CHARS
from schemas.redis_urls import Topology, parse_redis_url
from schemas.timezones import validate_time_zone

# Every duration lies in a range (seconds). Intervals, sleeps and thresholds start at 10 ms:
# below that the loops spin, and millisecond arithmetic rounds to 0 (Redis refuses the
# ``SET … PX 0`` of an autotakeover.sleep of 1e-9); through Settings the test suite uses
# 0.1 s at the least. Delays may be 0. A week bounds them all (their milliseconds stay far
# inside Redis' integer range, and a week-long heartbeat is a typo).
MIN_INTERVAL_S = 0.01
MAX_DURATION_S = 7 * 24 * 3600.0
# qwcontrol.manager.maxBodyBytes: the largest request body the manager accepts, bytes.
MAX_BODY_BYTES_RANGE = (1024, 1024**3)


class TakeoverPolicy(StrEnum):
    """Which dead members autotakeover takes over (``autotakeover.policy``)."""

    ANY = "any"
    STATIC = "static"
    REMOTE_EXECUTION = "remoteexecution"


class RecoverPolicy(StrEnum):
    """Whose running executions are recovered (``recoverExecutions.policy``)."""

    ANY = "any"
    STATIC = "static"


class RemoteExecutionPolicy(StrEnum):
    """How a destination member is chosen (``remoteExecution.policy``)."""

    NONE = "none"
    RANDOM = "random"
    ROUND_ROBIN = "roundrobin"
    PRESET = "preset"
    LOAD = "load"


class ValueDetail(QwcError, ValueError):
    """A refused value with a detail worth showing next to the :class:`Allowed` sentence."""


@dataclass(frozen=True)
class Allowed:
    """Field metadata: a human sentence of what a setting accepts."""

    text: str


@dataclass(frozen=True)
class Key:
    """Field metadata: the property key of a field, its alternative keys and env aliases.

    ``also`` are other accepted spellings of the key (setting two of them is an error);
    ``env`` are environment variables accepted besides the ones derived from the keys.
    """

    key: str
    also: tuple[str, ...] = ()
    env: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """The key and its alternative spellings."""
        return (self.key, *self.also)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _empty_to_none(value: Any) -> Any:
    value = _strip(value)
    return None if value == "" else value


def _flag(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word not in ("true", "false"):
        raise ValueError("expected true or false")
    return word == "true"


def _split_list(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    items = (item.strip() for item in value.split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def _canonical_uuid(value: str) -> str:
    if not _UUID.fullmatch(value):
        raise ValueDetail(f"`{value}` is not a UUID")
    return value.lower()


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _redis_url(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_redis_url(value)
        except ValueError as exc:
            raise ValueDetail(str(exc)) from None
    return value


def _rq_redis_url(value: str | None) -> str | None:
    if value is not None and parse_redis_url(value).topology is Topology.CLUSTER:
        raise ValueDetail("RQ does not run on Redis Cluster (its keys span hash slots)")
    return value


def _database_url(value: str | None) -> str | None:
    if value is None:
        return None
    from sqlalchemy.engine import make_url  # imported late: most commands never need it
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ValueDetail(str(exc)) from None
    return value


def _time_zone(value: str) -> str:
    try:
        return validate_time_zone(value)
    except ScheduleError as exc:
        raise ValueDetail(str(exc)) from None


def _prefix(value: str) -> str:
    if not _PREFIX.fullmatch(value):
        raise ValueError("letters, digits, '-', '_' and '.' only")
    return value


def _directory(value: Any) -> Any:
    value = _strip(value)
    if value == "":
        raise ValueError("empty path")
    return value


def _member_name(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > MEMBER_NAME_MAX_CHARS:
        raise ValueDetail(f"it has {len(value)} characters")
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        raise ValueDetail(f"{bad!r} is not printable")
    return value


def _one_of(enum: type[StrEnum]) -> Allowed:
    return Allowed("one of: " + ", ".join(member.value for member in enum) + " (any case)")


IntervalSeconds = Annotated[
    float,
    BeforeValidator(_strip),
    Ge(MIN_INTERVAL_S),
    Le(MAX_DURATION_S),
    AllowInfNan(False),
    Allowed(f"a number of seconds from {MIN_INTERVAL_S:g} to {MAX_DURATION_S:g} (7 days)"),
]
DelaySeconds = Annotated[
    float,
    BeforeValidator(_strip),
    Ge(0),
    Le(MAX_DURATION_S),
    AllowInfNan(False),
    Allowed(f"a number of seconds from 0 to {MAX_DURATION_S:g} (7 days)"),
]
BodyBytes = Annotated[
    int,
    BeforeValidator(_strip),
    Ge(MAX_BODY_BYTES_RANGE[0]),
    Le(MAX_BODY_BYTES_RANGE[1]),
    Allowed(f"a whole number of bytes from {MAX_BODY_BYTES_RANGE[0]} to {MAX_BODY_BYTES_RANGE[1]}"),
]
Fraction = Annotated[
    float,
    BeforeValidator(_strip),
    Gt(0),
    Le(1),
    AllowInfNan(False),
    Allowed("a fraction > 0 and <= 1"),
]
Flag = Annotated[bool, BeforeValidator(_flag), Allowed("true or false (any case)")]
MemberUuid = Annotated[str, BeforeValidator(_strip), AfterValidator(_canonical_uuid)]
UuidList = Annotated[
    tuple[MemberUuid, ...],
    BeforeValidator(_split_list),
    AfterValidator(_unique),
    Allowed("a comma-separated list of member UUIDs"),
]
TagList = Annotated[
    tuple[str, ...], BeforeValidator(_split_list), Allowed("a comma-separated list of tags")
]
OptionalUuid = Annotated[
    MemberUuid | None,
    BeforeValidator(_empty_to_none),
    Allowed("a UUID such as 0e5f6c3a-8d1b-4c2e-9f70-1a2b3c4d5e6f"),
]
MemberName = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(_member_name),
    Allowed(
        f"at most {MEMBER_NAME_MAX_CHARS} printable characters "
        "(letters, digits, punctuation, spaces; no tabs, newlines or control characters)"
    ),
]
RedisUrl = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(_redis_url),
    Allowed(
        "a redis://, rediss://, unix://, redis+sentinel://host:26379/service or "
        "redis+cluster://host:6379 URL"
    ),
]
RqRedisUrl = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(_redis_url),
    AfterValidator(_rq_redis_url),
    Allowed("a redis://, rediss://, unix:// or redis+sentinel://host:26379/service URL"),
]
DatabaseUrl = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(_database_url),
    Allowed("a SQLAlchemy database URL such as postgresql+psycopg://user@host:5432/db"),
]
RedisPrefix = Annotated[
    str,
    BeforeValidator(_strip),
    AfterValidator(_prefix),
    Allowed("a non-empty prefix of letters, digits, '-', '_' and '.'"),
]
HomeDir = Annotated[Path, BeforeValidator(_directory), Allowed("a directory path")]
TimeZoneName = Annotated[
    str,
    AfterValidator(_time_zone),
    Allowed("an IANA time zone name such as UTC, Europe/Paris or America/New_York"),
]
Token = Annotated[SecretStr | None, BeforeValidator(_empty_to_none), Allowed("any text")]
HEARTBEAT_SECRET_MIN_CHARS = 16


def _long_enough(value: SecretStr | None) -> SecretStr | None:
    chars = 0 if value is None else len(value.get_secret_value())
    if value is not None and chars < HEARTBEAT_SECRET_MIN_CHARS:
        raise ValueDetail(f"{chars} characters are too few to be guessed hard")
    return value


HeartbeatSecret = Annotated[
    SecretStr | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(_long_enough),
    Allowed(f"at least {HEARTBEAT_SECRET_MIN_CHARS} characters, set in the environment"),
]
# qwcontrol.metrics.maxJobSeries: jobs with per-job series of their own on /metrics.
MAX_JOB_SERIES = 10_000
JobSeriesCap = Annotated[
    int,
    BeforeValidator(_strip),
    Ge(0),
    Le(MAX_JOB_SERIES),
    Allowed(f"a whole number from 0 to {MAX_JOB_SERIES}"),
]
# -- executions: the pool, the drain, output and retention ------------------------------
MAX_THREAD_COUNT = 1000
ThreadCount = Annotated[
    int,
    BeforeValidator(_strip),
    Ge(1),
    Le(MAX_THREAD_COUNT),
    Allowed(f"a whole number from 1 to {MAX_THREAD_COUNT}"),
]
DrainSeconds = Annotated[
    float,
    BeforeValidator(_strip),
    Ge(0),
    Lt(86_400),
    AllowInfNan(False),
    Allowed("a finite number of seconds >= 0 and below one day"),
]
OUTPUT_MIN_BYTES = 1024
OUTPUT_MAX_BYTES = 16 * 1024 * 1024
OutputBytes = Annotated[
    int,
    BeforeValidator(_strip),
    Ge(OUTPUT_MIN_BYTES),
    Le(OUTPUT_MAX_BYTES),
    Allowed(f"a whole number of bytes from {OUTPUT_MIN_BYTES} to {OUTPUT_MAX_BYTES}"),
]
RETENTION_MAX_DAYS = 36500
RetentionDays = Annotated[
    float,
    BeforeValidator(_strip),
    Ge(0),
    Le(RETENTION_MAX_DAYS),
    AllowInfNan(False),
    Allowed(f"a number of days from 0 to {RETENTION_MAX_DAYS} (0: keep executions forever)"),
]
# ---------------------------------------------------------------------------------------
TakeoverPolicyValue = Annotated[TakeoverPolicy, BeforeValidator(_lower), _one_of(TakeoverPolicy)]
RecoverPolicyValue = Annotated[RecoverPolicy, BeforeValidator(_lower), _one_of(RecoverPolicy)]
RemoteExecutionPolicyValue = Annotated[
    RemoteExecutionPolicy, BeforeValidator(_lower), _one_of(RemoteExecutionPolicy)
]
