"""The settings of QW Control cluster mode: one frozen pydantic-settings class.

:func:`load_settings` is the only code that reads the config file and the environment.
``Settings(heartbeat_interval_s=0.2, ...)`` built in code reads neither: it takes field
names, validates every value and the rules between them, and raises
:class:`pydantic.ValidationError`. :func:`load_settings` raises
:class:`schemas.errors.ConfigError` listing every problem, each naming the key, the
value, what is allowed, and the file and line (or the environment variable).

Where a value comes from, highest first: ``overrides`` (by field name, e.g. CLI flags;
``None`` means "not given") > environment > config file > default. The config file is
the ``config_file`` argument, else ``$QWC_CONFIG``, else ``./qwcontrol-config.properties``
if it exists, else none; a file named by the argument or ``$QWC_CONFIG`` must exist, and
``/dev/null`` names no file at all. The file must be a regular file (a symlink to one is
fine) of at most 1 MiB of UTF-8 text (see :mod:`schemas.properties`).

Environment: every key ``qwcontrol.X.Y`` is overridden by ``QWC_`` + ``X.Y`` upper-cased
with the dots replaced by ``_`` (``qwcontrol.clusterMode.heartbeat.interval`` ->
``QWC_CLUSTERMODE_HEARTBEAT_INTERVAL``, ``qwcontrol.redis.url`` -> ``QWC_REDIS_URL``,
``qwcontrol.home`` -> ``QWC_HOME``). ``QWC_DATABASE_URL`` is accepted for
``qwcontrol.dataSource.url`` besides ``QWC_DATASOURCE_URL``. An empty variable counts as
unset. An unknown ``QWC_CLUSTERMODE_*`` variable is an error with a "did you mean".

Keys of the file (``cm.`` = ``qwcontrol.clusterMode.``; durations are seconds, decimals
allowed, finite, at most 604800 (7 days); intervals, sleeps and thresholds are at least
0.01, delays at least 0; lists are comma-separated; policies and booleans in any case):

| key | field | default |
|---|---|---|
| `cm.enabled` (true/false) | cluster_mode_enabled | true |
| `cm.heartbeat.interval` (>= 0.01) | heartbeat_interval_s | 30 |
| `cm.heartbeat.delay` (>= 0) | heartbeat_delay_s | 10 |
| `cm.heartbeat.considerInactive` (> interval) | heartbeat_consider_inactive_s | 150 |
| `cm.heartbeat.considerDead` (> considerInactive) | heartbeat_consider_dead_s | 300 |
| `cm.heartbeat.secret` (>= 16 characters; never shown) | heartbeat_secret | — |
| `cm.remoteExec.process.interval` (>= 0.01) | remote_exec_process_interval_s | 10 |
| `cm.autotakeover.enabled` (true/false) | autotakeover_enabled | false |
| `cm.autotakeover.policy` (any/static/remoteexecution) | autotakeover_policy | any |
| `cm.autotakeover.config.allowed` (UUIDs) | autotakeover_allowed | — |
| `cm.autotakeover.delay` (>= 0) | autotakeover_delay_s | 60 |
| `cm.autotakeover.sleep` (>= 0.01) | autotakeover_sleep_s | 300 |
| `cm.autotakeover.massFailure.fraction` (0 < f <= 1) | mass_failure_fraction | 0.5 |
| `cm.recoverExecutions.enabled` (true/false) | recover_enabled | false |
| `cm.recoverExecutions.policy` (any/static) | recover_policy | any |
| `cm.recoverExecutions.config.allowed` or `.allowed` | recover_allowed | — |
| `cm.recoverExecutions.delay` (>= 0) | recover_delay_s | 30 |
| `cm.recoverExecutions.sleep` (>= 0.01) | recover_sleep_s | 60 |
| `cm.remoteExecution.policy` (random/roundrobin/preset/load) | remote_execution_policy | none |
| `cm.remoteExecution.config.allowed` (UUIDs) | remote_execution_allowed | — |
| `cm.remoteExecution.config.activeOnly` (true/false) | remote_execution_active_only | true |
| `cm.remoteExecution.config.preferredTags` | remote_execution_preferred_tags | — |
| `qwcontrol.server.uuid` (a UUID) | server_uuid | — |
| `qwcontrol.server.name` (<= 200 printable characters) | server_name | — |
| `qwcontrol.server.tags` | server_tags | — |
| `qwcontrol.redis.url` (forms: schemas/redis_urls.py) | redis_url | embedded |
| `qwcontrol.rq.redis.url` (not a cluster) | rq_redis_url | redis.url, or embedded |
| `qwcontrol.redis.prefix` (letters, digits, `-_.`) | redis_prefix | qwc |
| `qwcontrol.dataSource.url` (SQLAlchemy URL) | database_url | embedded SQLite |
| `qwcontrol.home` (data of the embedded Redis + SQLite) | home_dir | ./.qwc |
| `qwcontrol.manager.token` (never shown) | manager_token | — |
| `qwcontrol.manager.readToken` (never shown) | manager_read_token | — |
| `qwcontrol.manager.readOpen` (true/false) | manager_read_open | false |
| `qwcontrol.manager.maxBodyBytes` (1024..1 GiB) | manager_max_body_bytes | 1048576 |
| `qwcontrol.scheduler.timeZone` (an IANA zone name) | scheduler_time_zone | UTC |
| `qwcontrol.executions.threadCount` (1..1000) | executions_thread_count | 10 |
| `qwcontrol.executions.drainTimeout` (>= 0, < 1 day) | executions_drain_timeout_s | 30 |
| `qwcontrol.executions.output.maxBytes` (1024 to 16777216) | executions_output_max_bytes | 65536 |
| `qwcontrol.executions.retention.days` (0 to 36500; 0: forever) | executions_retention_days | 30 |
| `qwcontrol.metrics.maxJobSeries` (0 to 10000) | metrics_max_job_series | 100 |
| `qwcontrol.notifications.webhooks.<name>.url` / `.events` | notification_webhooks | — |
| `qwcontrol.notifications.secret` (>= 16 characters, never shown) | notification_secret | — |
| `qwcontrol.notifications.timeout` (0.01 to 300) | notification_timeout_s | 10 |
| `qwcontrol.notifications.retry.initial` (>= 0.01) | notification_retry_initial_s | 1 |
| `qwcontrol.notifications.retry.max` (>= 0.01) | notification_retry_max_s | 300 |
| `qwcontrol.notifications.retry.horizon` (>= 0) | notification_retry_horizon_s | 3600 |

The manager's HTTP API (``qwc manager``): a mutating call needs ``Authorization: Bearer``
with ``manager.token`` (none set: every mutating call is refused); a reading call needs
``manager.token`` or ``manager.readToken``, unless ``manager.readOpen`` is true. A request
body over ``manager.maxBodyBytes`` is refused (413) before it is read. Its ``/metrics``
give at most ``metrics.maxJobSeries`` jobs series of their own; the others are counted
together in ``job_id="_other"`` (docs/manager.md, "Metrics").

``scheduler_time_zone``: the zone in which the cron schedule of a job without a zone of its
own is read (``schemas.cron``; ``docs/schedules.md``).

``heartbeat_secret``: when set, members sign their heartbeats (HMAC-SHA256) and liveness
workers dead-letter unsigned or wrongly signed ones (:mod:`schemas.signing`). Every member
and liveness worker needs the same value: set it in the environment
(``QWC_CLUSTERMODE_HEARTBEAT_SECRET``), not in a file every process reads.

``executions_thread_count``: how many executions a member runs at once (its pool's slots;
Quartz's and Rundeck's ``quartz.threadPool.threadCount`` is accepted as the same setting).
``executions_drain_timeout_s``: on SIGTERM a member lets its running executions finish
for up to this long, then ends them (``incomplete``, retried per the job); see
docs/executions.md.

``cluster_mode_enabled``: the product's files hold ``qwcontrol.clusterMode.enabled``; this
service is cluster mode, so ``false`` makes ``qwc node`` and ``qwc worker …`` refuse to
start (saying where it was set) instead of running half a cluster.

UUIDs are stored lower-case. ``mass_failure_fraction``: the guard holds takeovers when
MORE than this fraction of the members, and at least 2, would turn dead within one
``considerDead`` window.

Executions: a member runs up to ``threadCount`` at once and, told to stop, lets them
finish for up to ``drainTimeout`` seconds; each keeps up to ``output.maxBytes`` of its
output (its head and its tail when it printed more); ``retention.days`` after it ended it
is deleted (by the recovery worker).

Notifications (docs/notifications.md): each webhook receiver is ``…webhooks.<name>.url``
(http or https) and ``…webhooks.<name>.events`` (patterns such as ``member.*``), both
required; see :mod:`schemas.settings_webhooks`. Its events are POSTed, signed with
``secret`` when set, each attempt answered within ``timeout``; a failed delivery is
retried after ``retry.initial`` s, doubling up to ``retry.max`` s, until ``retry.horizon``
s after the first attempt, then kept in the failed list. Unknown keys under
``qwcontrol.notifications.`` are errors too.

Rules: ``static`` policies need a non-empty ``allowed`` list of UUIDs, ``preset`` needs
``remoteExecution.config.allowed``. Unknown keys under ``qwcontrol.clusterMode.``, and
known keys spelled in another case, are errors ("did you mean"); other keys are ignored
(the product's file holds many other settings). Keys under ``qwcontrol.executions.`` are
all ours too: an unknown one is an error as well.
"""

from __future__ import annotations

__all__ = [
    "Origin",
    "RecoverPolicy",
    "RemoteExecutionPolicy",
    "Settings",
    "TakeoverPolicy",
    "find_config_file",
    "load_settings",
    "origins",
]

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import PrivateAttr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.settings_rules import Origin, Source, broken_rules
from schemas.settings_types import (
    BodyBytes,
    DatabaseUrl,
    DelaySeconds,
    DrainSeconds,
    Flag,
    Fraction,
    HeartbeatSecret,
    HomeDir,
    IntervalSeconds,
    JobSeriesCap,
    Key,
    MemberName,
    OptionalUuid,
    OutputBytes,
    RecoverPolicy,
    RecoverPolicyValue,
    RedisPrefix,
    RedisUrl,
    RemoteExecutionPolicy,
    RemoteExecutionPolicyValue,
    RetentionDays,
    RqRedisUrl,
    TagList,
    TakeoverPolicy,
    TakeoverPolicyValue,
    ThreadCount,
    TimeZoneName,
    Token,
    UuidList,
)
from schemas.settings_webhooks import HttpTimeoutSeconds, NotifySecret, WebhookList

_CM = "qwcontrol.clusterMode."
_NOTIFY = "qwcontrol.notifications."


class Settings(BaseSettings):
    """Every setting of cluster mode, by field name (see the module docstring for keys)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    cluster_mode_enabled: Annotated[Flag, Key(_CM + "enabled")] = True
    heartbeat_interval_s: Annotated[IntervalSeconds, Key(_CM + "heartbeat.interval")] = 30.0
    heartbeat_delay_s: Annotated[DelaySeconds, Key(_CM + "heartbeat.delay")] = 10.0
    heartbeat_consider_inactive_s: Annotated[
        IntervalSeconds, Key(_CM + "heartbeat.considerInactive")
    ] = 150.0
    heartbeat_consider_dead_s: Annotated[IntervalSeconds, Key(_CM + "heartbeat.considerDead")] = (
        300.0
    )
    heartbeat_secret: Annotated[HeartbeatSecret, Key(_CM + "heartbeat.secret")] = None
    remote_exec_process_interval_s: Annotated[
        IntervalSeconds, Key(_CM + "remoteExec.process.interval")
    ] = 10.0
    autotakeover_enabled: Annotated[Flag, Key(_CM + "autotakeover.enabled")] = False
    autotakeover_policy: Annotated[TakeoverPolicyValue, Key(_CM + "autotakeover.policy")] = (
        TakeoverPolicy.ANY
    )
    autotakeover_allowed: Annotated[UuidList, Key(_CM + "autotakeover.config.allowed")] = ()
    autotakeover_delay_s: Annotated[DelaySeconds, Key(_CM + "autotakeover.delay")] = 60.0
    autotakeover_sleep_s: Annotated[IntervalSeconds, Key(_CM + "autotakeover.sleep")] = 300.0
    recover_enabled: Annotated[Flag, Key(_CM + "recoverExecutions.enabled")] = False
    recover_policy: Annotated[RecoverPolicyValue, Key(_CM + "recoverExecutions.policy")] = (
        RecoverPolicy.ANY
    )
    recover_allowed: Annotated[
        UuidList,
        Key(_CM + "recoverExecutions.config.allowed", also=(_CM + "recoverExecutions.allowed",)),
    ] = ()
    recover_delay_s: Annotated[DelaySeconds, Key(_CM + "recoverExecutions.delay")] = 30.0
    recover_sleep_s: Annotated[IntervalSeconds, Key(_CM + "recoverExecutions.sleep")] = 60.0
    remote_execution_policy: Annotated[
        RemoteExecutionPolicyValue, Key(_CM + "remoteExecution.policy")
    ] = RemoteExecutionPolicy.NONE
    remote_execution_allowed: Annotated[UuidList, Key(_CM + "remoteExecution.config.allowed")] = ()
    remote_execution_active_only: Annotated[
        Flag, Key(_CM + "remoteExecution.config.activeOnly")
    ] = True
    remote_execution_preferred_tags: Annotated[
        TagList, Key(_CM + "remoteExecution.config.preferredTags")
    ] = ()
    mass_failure_fraction: Annotated[Fraction, Key(_CM + "autotakeover.massFailure.fraction")] = 0.5
    server_uuid: Annotated[OptionalUuid, Key("qwcontrol.server.uuid")] = None
    server_name: Annotated[MemberName, Key("qwcontrol.server.name")] = None
    server_tags: Annotated[TagList, Key("qwcontrol.server.tags")] = ()
    redis_url: Annotated[RedisUrl, Key("qwcontrol.redis.url")] = None
    redis_prefix: Annotated[RedisPrefix, Key("qwcontrol.redis.prefix")] = "qwc"
    rq_redis_url: Annotated[RqRedisUrl, Key("qwcontrol.rq.redis.url")] = None
    database_url: Annotated[
        DatabaseUrl, Key("qwcontrol.dataSource.url", env=("QWC_DATABASE_URL",))
    ] = None
    home_dir: Annotated[HomeDir, Key("qwcontrol.home")] = Path("./.qwc")
    manager_token: Annotated[Token, Key("qwcontrol.manager.token")] = None
    manager_read_token: Annotated[Token, Key("qwcontrol.manager.readToken")] = None
    manager_read_open: Annotated[Flag, Key("qwcontrol.manager.readOpen")] = False
    manager_max_body_bytes: Annotated[BodyBytes, Key("qwcontrol.manager.maxBodyBytes")] = 1048576
    metrics_max_job_series: Annotated[JobSeriesCap, Key("qwcontrol.metrics.maxJobSeries")] = 100
    # -- the schedules of jobs (schemas.cron) --
    scheduler_time_zone: Annotated[TimeZoneName, Key("qwcontrol.scheduler.timeZone")] = "UTC"
    # -- executions: the pool, the drain, output and retention ------------------------
    executions_thread_count: Annotated[
        ThreadCount,
        Key("qwcontrol.executions.threadCount", also=("quartz.threadPool.threadCount",)),
    ] = 10
    executions_drain_timeout_s: Annotated[
        DrainSeconds, Key("qwcontrol.executions.drainTimeout")
    ] = 30.0
    executions_output_max_bytes: Annotated[
        OutputBytes, Key("qwcontrol.executions.output.maxBytes")
    ] = 64 * 1024
    executions_retention_days: Annotated[
        RetentionDays, Key("qwcontrol.executions.retention.days")
    ] = 30.0
    # ---------------------------------------------------------------------------------
    # -- notifications (docs/notifications.md) ------------------------------------------
    notification_webhooks: Annotated[WebhookList, Key(_NOTIFY + "webhooks")] = ()
    notification_secret: Annotated[NotifySecret, Key(_NOTIFY + "secret")] = None
    notification_timeout_s: Annotated[HttpTimeoutSeconds, Key(_NOTIFY + "timeout")] = 10.0
    notification_retry_initial_s: Annotated[IntervalSeconds, Key(_NOTIFY + "retry.initial")] = 1.0
    notification_retry_max_s: Annotated[IntervalSeconds, Key(_NOTIFY + "retry.max")] = 300.0
    notification_retry_horizon_s: Annotated[DelaySeconds, Key(_NOTIFY + "retry.horizon")] = 3600.0
    # -----------------------------------------------------------------------------------

    # field -> (origin, value it was loaded with); filled by load_settings only
    _loaded: Mapping[str, tuple[Origin, Any]] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the constructor's arguments: the file and environment are load_settings' job."""
        return (init_settings,)

    @model_validator(mode="after")
    def _check_rules(self) -> Settings:
        broken = broken_rules(self.__dict__)
        if broken:
            raise ValueError("; ".join(rule.describe_fields(self.__dict__) for rule in broken))
        return self


def find_config_file(
    config_file: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The file :func:`load_settings` reads: ``config_file``, else ``$QWC_CONFIG``, else
    ``./qwcontrol-config.properties`` if it exists (as anything: a directory or FIFO of
    that name is refused when read, not skipped), else None. ``/dev/null`` means None.
    Does not check existence of an explicitly named file."""
    environ = os.environ if environ is None else environ
    if config_file is not None and str(config_file) != "":
        named = Path(config_file)
    elif environ.get("QWC_CONFIG"):
        named = Path(environ["QWC_CONFIG"])
    else:
        default = Path("qwcontrol-config.properties")
        return default if os.path.lexists(default) else None
    return None if str(named) == os.devnull else named


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Read the config file, the environment (``os.environ`` by default) and ``overrides``.

    Raises :class:`schemas.errors.ConfigError` listing every problem: an unreadable or
    missing (explicitly named) file, an unknown or wrongly cased key, a value that does not
    parse, a rule between keys that does not hold.
    """
    from schemas.settings_loader import load_layers  # the loader needs Settings' fields

    environ = os.environ if environ is None else environ
    values, loaded = load_layers(find_config_file(config_file, environ=environ), environ, overrides)
    settings = Settings(**values)
    settings._loaded = MappingProxyType(dict(loaded))
    return settings


def origins(settings: Settings) -> dict[str, Origin]:
    """Where each setting came from, by property key, in field order.

    A value changed after loading (``model_copy(update=...)``, or a ``Settings`` built in
    code) reports ``override``, or ``default`` when it equals the default.
    """
    result: dict[str, Origin] = {}
    for name, info in Settings.model_fields.items():
        key = next(m for m in info.metadata if isinstance(m, Key)).key
        value = getattr(settings, name)
        loaded = settings._loaded.get(name)
        if loaded is not None and loaded[1] == value:
            result[key] = loaded[0]
        else:
            source: Source = "default" if value == info.default else "override"
            result[key] = Origin(source, key)
    return result
