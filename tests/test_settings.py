"""Settings: the seed's file, defaults, environment and precedence, Java syntax, every rule."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from schemas.errors import ConfigError, ConfigProblem
from schemas.settings import (
    Origin,
    RecoverPolicy,
    RemoteExecutionPolicy,
    Settings,
    TakeoverPolicy,
    find_config_file,
    load_settings,
    origins,
)

DATA = Path(__file__).parent / "data" / "config"
SEED = DATA / "seed.properties"
INVALID = sorted((DATA / "invalid").glob("*.properties"))
CM = "qwcontrol.clusterMode."
UUID_A = "6b3a1c2d-1e4f-4a5b-8c9d-0e1f2a3b4c5d"
UUID_B = "0e5f6c3a-8d1b-4c2e-9f70-1a2b3c4d5e6f"


pytestmark = pytest.mark.usefixtures("isolated_settings")


def write(tmp_path: Path, text: str, name: str = "qwc.properties") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(*args: object, **kwargs: object) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def expectation(path: Path) -> dict[str, str]:
    """The ``# expect-key/line/text:`` header of an invalid fixture file."""
    return dict(re.findall(r"^# expect-(\w+): (.*)$", path.read_text(), re.MULTILINE))


# --- the seed ---------------------------------------------------------------------------


def test_seed_blocks_load_with_the_seed_values() -> None:
    settings = load_settings(SEED, environ={})
    assert settings.heartbeat_interval_s == 30
    assert settings.heartbeat_delay_s == 10
    assert settings.remote_exec_process_interval_s == 10
    assert settings.heartbeat_consider_inactive_s == 150
    assert settings.heartbeat_consider_dead_s == 300
    assert settings.autotakeover_enabled is True
    assert settings.autotakeover_policy is TakeoverPolicy.ANY
    assert settings.autotakeover_delay_s == 60
    assert settings.autotakeover_sleep_s == 300
    assert settings.recover_enabled is True
    assert settings.recover_policy is RecoverPolicy.ANY  # written "Any" in the seed
    assert settings.recover_delay_s == 30
    assert settings.recover_sleep_s == 60


def test_seed_origins_name_file_and_line() -> None:
    by_key = origins(load_settings(SEED, environ={}))
    assert by_key[CM + "heartbeat.interval"] == Origin(
        "file", CM + "heartbeat.interval", file=str(SEED), line=5
    )
    assert by_key[CM + "autotakeover.delay"].line == 26  # "key = value" with spaces
    assert by_key[CM + "recoverExecutions.policy"].line == 36
    assert by_key[CM + "recoverExecutions.sleep"].line == 42
    assert by_key["qwcontrol.redis.url"].source == "default"
    assert str(by_key[CM + "heartbeat.delay"]) == f"{SEED}:8"


# --- defaults ----------------------------------------------------------------------------


DESIGN_DEFAULTS = {
    "cluster_mode_enabled": True,
    "heartbeat_interval_s": 30,
    "heartbeat_delay_s": 10,
    "heartbeat_consider_inactive_s": 150,
    "heartbeat_consider_dead_s": 300,
    "remote_exec_process_interval_s": 10,
    "autotakeover_enabled": False,
    "autotakeover_policy": TakeoverPolicy.ANY,
    "autotakeover_allowed": (),
    "autotakeover_delay_s": 60,
    "autotakeover_sleep_s": 300,
    "recover_enabled": False,
    "recover_policy": RecoverPolicy.ANY,
    "recover_allowed": (),
    "recover_delay_s": 30,
    "recover_sleep_s": 60,
    "remote_execution_policy": RemoteExecutionPolicy.NONE,
    "remote_execution_allowed": (),
    "remote_execution_active_only": True,
    "remote_execution_preferred_tags": (),
    "mass_failure_fraction": 0.5,
    "server_uuid": None,
    "server_name": None,
    "server_tags": (),
    "redis_url": None,
    "redis_prefix": "qwc",
    "rq_redis_url": None,
    "database_url": None,
    "home_dir": Path(".qwc"),
    "manager_token": None,
    "manager_read_token": None,
    "manager_read_open": False,
    "heartbeat_secret": None,
    "manager_max_body_bytes": 1048576,
    "metrics_max_job_series": 100,
    "scheduler_time_zone": "UTC",
    "executions_thread_count": 10,  # Quartz's and Rundeck's thread pool
    "executions_drain_timeout_s": 30,
    "executions_output_max_bytes": 65536,
    "executions_retention_days": 30,
    "notification_webhooks": (),
    "notification_secret": None,
    "notification_timeout_s": 10,
    "notification_retry_initial_s": 1,
    "notification_retry_max_s": 300,
    "notification_retry_horizon_s": 3600,
}


def test_defaults_equal_design() -> None:
    loaded = load_settings(environ={})
    assert loaded.model_dump() == DESIGN_DEFAULTS
    assert Settings().model_dump() == DESIGN_DEFAULTS
    assert {o.source for o in origins(loaded).values()} == {"default"}


def test_no_file_found_means_none() -> None:
    assert find_config_file(environ={}) is None


def test_default_file_in_working_directory_is_read(tmp_path: Path) -> None:
    write(tmp_path, f"{CM}heartbeat.interval=12\n", "qwcontrol-config.properties")
    assert find_config_file(environ={}) == Path("qwcontrol-config.properties")
    assert load_settings(environ={}).heartbeat_interval_s == 12


def test_qwc_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"{CM}heartbeat.delay=3\n", "elsewhere.properties")
    write(tmp_path, f"{CM}heartbeat.delay=4\n", "qwcontrol-config.properties")
    assert load_settings(environ={"QWC_CONFIG": str(path)}).heartbeat_delay_s == 3
    explicit = write(tmp_path, f"{CM}heartbeat.delay=5\n", "explicit.properties")
    assert load_settings(explicit, environ={"QWC_CONFIG": str(path)}).heartbeat_delay_s == 5


@pytest.mark.parametrize("how", ["argument", "QWC_CONFIG"])
def test_missing_named_file_is_an_error(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "missing.properties"
    if how == "argument":
        problems = problems_of(missing, environ={})
    else:
        problems = problems_of(environ={"QWC_CONFIG": str(missing)})
    assert [p.key for p in problems] == ["config file"]
    assert problems[0].value == str(missing)
    assert "No such file" in problems[0].allowed


# --- built in code ----------------------------------------------------------------------


def test_settings_built_in_code_read_neither_environment_nor_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QWC_CLUSTERMODE_HEARTBEAT_INTERVAL", "7")
    monkeypatch.setenv("HEARTBEAT_INTERVAL_S", "7")
    write(tmp_path, f"{CM}heartbeat.interval=8\n", "qwcontrol-config.properties")
    assert Settings().heartbeat_interval_s == 30
    assert Settings(heartbeat_interval_s=0.2).heartbeat_interval_s == 0.2


def test_settings_built_in_code_check_rules_and_values() -> None:
    with pytest.raises(ValidationError, match="must be less than heartbeat_consider_inactive_s"):
        Settings(heartbeat_interval_s=200)
    with pytest.raises(ValidationError, match="needs a non-empty autotakeover_allowed"):
        Settings(autotakeover_policy=TakeoverPolicy.STATIC)
    with pytest.raises(ValidationError):
        Settings(heartbeat_delay_s=-1)
    with pytest.raises(ValidationError):
        Settings(heartbeat_intervall_s=1)  # type: ignore[call-arg]


def test_settings_are_frozen_and_copies_report_override() -> None:
    settings = load_settings(SEED, environ={})
    with pytest.raises(ValidationError):
        settings.heartbeat_interval_s = 1
    copy = settings.model_copy(update={"heartbeat_interval_s": 0.2})
    assert copy.heartbeat_interval_s == 0.2
    assert origins(copy)[CM + "heartbeat.interval"].source == "override"
    assert origins(copy)[CM + "heartbeat.delay"].line == 8
    assert origins(Settings(heartbeat_delay_s=1))[CM + "heartbeat.delay"].source == "override"


# --- environment and precedence ---------------------------------------------------------


def test_precedence_override_over_environment_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path, f"{CM}heartbeat.interval=20\n{CM}heartbeat.delay=4\n")
    env = {"QWC_CLUSTERMODE_HEARTBEAT_INTERVAL": "25"}
    from_env = load_settings(path, environ=env)
    assert from_env.heartbeat_interval_s == 25
    assert from_env.heartbeat_delay_s == 4
    origin = origins(from_env)[CM + "heartbeat.interval"]
    assert (origin.source, origin.env) == ("environment", "QWC_CLUSTERMODE_HEARTBEAT_INTERVAL")
    assert str(origin) == "environment QWC_CLUSTERMODE_HEARTBEAT_INTERVAL"
    overridden = load_settings(path, environ=env, overrides={"heartbeat_interval_s": 0.2})
    assert overridden.heartbeat_interval_s == 0.2
    assert origins(overridden)[CM + "heartbeat.interval"].source == "override"
    assert origins(overridden)[CM + "heartbeat.considerDead"].source == "default"


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWC_CLUSTERMODE_AUTOTAKEOVER_POLICY", "RemoteExecution")
    monkeypatch.setenv("QWC_REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = load_settings()
    assert settings.autotakeover_policy is TakeoverPolicy.REMOTE_EXECUTION
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_environment_aliases() -> None:
    env = {
        "QWC_DATABASE_URL": "sqlite:///qwc.db",
        "QWC_HOME": "/var/lib/qwc",
        "QWC_MANAGER_TOKEN": "s3cret",
        "QWC_SERVER_UUID": UUID_A.upper(),
        "QWC_CLUSTERMODE_RECOVEREXECUTIONS_ALLOWED": UUID_B,
    }
    settings = load_settings(environ=env)
    assert settings.database_url == "sqlite:///qwc.db"
    assert settings.home_dir == Path("/var/lib/qwc")
    assert settings.manager_token == SecretStr("s3cret")
    assert "s3cret" not in repr(settings)
    assert settings.server_uuid == UUID_A
    assert settings.recover_allowed == (UUID_B,)
    assert load_settings(environ={"QWC_DATASOURCE_URL": "sqlite://"}).database_url == "sqlite://"


def test_two_variables_for_one_setting_is_an_error() -> None:
    env = {"QWC_DATABASE_URL": "sqlite://", "QWC_DATASOURCE_URL": "sqlite:///x.db"}
    (problem,) = problems_of(environ=env)
    assert problem.key == "qwcontrol.dataSource.url"
    assert "set only one of `QWC_DATABASE_URL`" in problem.allowed


def test_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, f"{CM}heartbeat.interval=20\n")
    env = {"QWC_CLUSTERMODE_HEARTBEAT_INTERVAL": "", "QWC_REDIS_URL": ""}
    settings = load_settings(path, environ=env)
    assert settings.heartbeat_interval_s == 20
    assert settings.redis_url is None


def test_unknown_clustermode_variable_is_an_error_with_suggestion() -> None:
    env = {"QWC_CLUSTERMODE_HEARTBEAT_INTERVALL": "3", "QWC_TEST_REDIS_URL": "redis://x"}
    (problem,) = problems_of(environ=env)
    assert problem.key == "QWC_CLUSTERMODE_HEARTBEAT_INTERVALL"
    assert problem.source == "environment (QWC_CLUSTERMODE_HEARTBEAT_INTERVALL)"
    assert "did you mean `QWC_CLUSTERMODE_HEARTBEAT_INTERVAL`?" in problem.allowed


EX = "qwcontrol.executions."


def test_execution_output_and_retention_from_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, f"{EX}output.maxBytes = 2048\n{EX}retention.days=0.5\n")
    settings = load_settings(path, environ={})
    assert (settings.executions_output_max_bytes, settings.executions_retention_days) == (2048, 0.5)
    env = {"QWC_EXECUTIONS_OUTPUT_MAXBYTES": "4096", "QWC_EXECUTIONS_RETENTION_DAYS": "0"}
    settings = load_settings(path, environ=env)
    assert (settings.executions_output_max_bytes, settings.executions_retention_days) == (4096, 0)


@pytest.mark.parametrize(
    ("line", "key", "allowed"),
    [
        ("output.maxBytes=100", "output.maxBytes", "a whole number of bytes from 1024 to 16777216"),
        ("output.maxBytes=64k", "output.maxBytes", "a whole number of bytes"),
        ("output.maxBytes=99999999", "output.maxBytes", "to 16777216"),
        ("retention.days=-1", "retention.days", "a number of days from 0 to 36500"),
        ("retention.days=1e9", "retention.days", "a number of days from 0 to 36500"),
        ("retention.days=forever", "retention.days", "(0: keep executions forever)"),
    ],
)
def test_bad_execution_settings_name_key_line_and_what_is_allowed(
    tmp_path: Path, line: str, key: str, allowed: str
) -> None:
    path = write(tmp_path, f"# executions\n{EX}{line}\n")
    (problem,) = problems_of(path, environ={})
    assert (problem.key, problem.line, problem.source) == (EX + key, 2, str(path))
    assert allowed in problem.allowed and problem.value == line.split("=", 1)[1]


def test_unknown_key_under_executions_is_an_error_with_suggestion(tmp_path: Path) -> None:
    """A typo must not fall back to the default silently (as under clusterMode.)."""
    path = write(tmp_path, f"{EX}retention.day=7\nqwcontrol.other.key=1\n")
    (problem,) = problems_of(path, environ={})
    assert (problem.key, problem.line) == (EX + "retention.day", 1)
    assert "unknown key under qwcontrol.executions.: did you mean" in problem.allowed
    assert f"`{EX}retention.days`" in problem.allowed
    (problem,) = problems_of(environ={"QWC_EXECUTIONS_OUTPUT_MAXBYTE": "2048"})
    assert "did you mean `QWC_EXECUTIONS_OUTPUT_MAXBYTES`?" in problem.allowed


def test_bad_environment_value_names_the_variable() -> None:
    (problem,) = problems_of(environ={"QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD": "soon"})
    assert problem.key == CM + "heartbeat.considerDead"
    assert problem.source == "environment (QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD)"
    assert problem.line is None


def test_overrides_by_field_name() -> None:
    settings = load_settings(environ={}, overrides={"redis_url": None, "redis_prefix": "t1"})
    assert settings.redis_prefix == "t1"
    assert settings.redis_url is None  # None means "not given"
    (problem,) = problems_of(environ={}, overrides={"redis_prefx": "t1"})
    assert problem.source == "override"
    assert "did you mean `redis_prefix`?" in problem.allowed


# --- values and syntax ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("0.2", 0.2), (" 1.5 ", 1.5), ("2", 2.0)])
def test_decimal_durations(tmp_path: Path, text: str, seconds: float) -> None:
    path = write(tmp_path, f"{CM}heartbeat.interval={text}\n{CM}autotakeover.delay={text}\n")
    settings = load_settings(path, environ={})
    assert math.isclose(settings.heartbeat_interval_s, seconds)
    assert math.isclose(settings.autotakeover_delay_s, seconds)


def test_zero_delay_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, f"{CM}heartbeat.delay=0\n{CM}recoverExecutions.delay = 0.0\n")
    settings = load_settings(path, environ={})
    assert (settings.heartbeat_delay_s, settings.recover_delay_s) == (0, 0)


def test_java_properties_syntax(tmp_path: Path) -> None:
    text = (
        "! bang comment\r\n"
        f"{CM}heartbeat.interval:5\r\n"
        f"{CM}heartbeat.considerInactive 50\r\n"
        f"{CM}remoteExecution.config.preferredTags = fast,\\\r\n"
        "      gpu , \\\r\n"
        "      eu\r\n"
        f"{CM}heartbeat.interval = 6\r\n"
        f"   {CM}remoteExecution.config.activeOnly=FALSE\r\n"
    )
    path = write(tmp_path, text)
    settings = load_settings(path, environ={})
    assert settings.heartbeat_interval_s == 6  # repeated key: the last one wins
    assert settings.heartbeat_consider_inactive_s == 50
    assert settings.remote_execution_preferred_tags == ("fast", "gpu", "eu")
    assert settings.remote_execution_active_only is False
    by_key = origins(settings)
    assert by_key[CM + "heartbeat.interval"].line == 7
    assert by_key[CM + "remoteExecution.config.preferredTags"].line == 4
    assert by_key[CM + "remoteExecution.config.activeOnly"].line == 8


@pytest.mark.parametrize(
    ("spelled", "policy"),
    [
        ("Any", TakeoverPolicy.ANY),
        ("STATIC", TakeoverPolicy.STATIC),
        ("RemoteExecution", TakeoverPolicy.REMOTE_EXECUTION),
    ],
)
def test_takeover_policy_any_case(tmp_path: Path, spelled: str, policy: TakeoverPolicy) -> None:
    text = f"{CM}autotakeover.policy={spelled}\n{CM}autotakeover.config.allowed={UUID_A}\n"
    path = write(tmp_path, text)
    assert load_settings(path, environ={}).autotakeover_policy is policy


@pytest.mark.parametrize("policy", list(RemoteExecutionPolicy))
def test_remote_execution_policies(tmp_path: Path, policy: RemoteExecutionPolicy) -> None:
    spelled = {"roundrobin": "RoundRobin"}.get(policy.value, policy.value.title())
    path = write(
        tmp_path,
        f"{CM}remoteExecution.policy={spelled}\n{CM}remoteExecution.config.allowed={UUID_A}\n",
    )
    assert load_settings(path, environ={}).remote_execution_policy is policy


def test_allowed_uuids_are_canonical(tmp_path: Path) -> None:
    text = (
        f"{CM}autotakeover.policy=static\n"
        f"{CM}autotakeover.config.allowed= {UUID_A.upper()} ,{UUID_B},{UUID_A}\n"
        f"{CM}recoverExecutions.allowed={UUID_B}\n"
    )
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.autotakeover_allowed == (UUID_A, UUID_B)
    assert settings.recover_allowed == (UUID_B,)
    assert origins(settings)[CM + "recoverExecutions.config.allowed"].key == (
        CM + "recoverExecutions.allowed"
    )


def test_keys_that_are_not_ours_are_ignored(tmp_path: Path) -> None:
    text = (
        "qwcontrol.something.else=1\n"
        "dataSource.url=jdbc:h2:file:/var/lib/qw\n"
        "framework.server.name=qw1\n"
        f"{CM}heartbeat.interval=9\n"
    )
    assert load_settings(write(tmp_path, text), environ={}).heartbeat_interval_s == 9


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://u:p@redis.example:6380", "unix:///tmp/r.sock"]
)
def test_redis_url_schemes(url: str) -> None:
    assert load_settings(environ={"QWC_REDIS_URL": url}).redis_url == url


def test_other_service_settings(tmp_path: Path) -> None:
    text = (
        f"qwcontrol.server.uuid={UUID_A.upper()}\n"
        "qwcontrol.server.name=node one\n"
        "qwcontrol.server.tags=eu, gpu\n"
        "qwcontrol.redis.prefix=qwc-prod.1\n"
        "qwcontrol.dataSource.url=postgresql+psycopg://postgres@127.0.0.1:5432/test\n"
        "qwcontrol.home=/srv/qwc\n"
        f"{CM}autotakeover.massFailure.fraction=1\n"
    )
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.server_uuid == UUID_A
    assert settings.server_name == "node one"
    assert settings.server_tags == ("eu", "gpu")
    assert settings.redis_prefix == "qwc-prod.1"
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert settings.home_dir == Path("/srv/qwc")
    assert settings.mass_failure_fraction == 1


# --- invalid settings -------------------------------------------------------------------


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file_names_key_line_and_allowed(path: Path) -> None:
    expected = expectation(path)
    (problem,) = problems_of(path, environ={})
    assert problem.key == expected["key"]
    assert problem.line == int(expected["line"])
    assert expected["text"] in problem.allowed
    assert problem.source == str(path)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = (
        f"{CM}heartbeat.intervall=30\n"
        f"{CM}autotakeover.enabled=maybe\n"
        f"{CM}heartbeat.considerDead=100\n"
        f"{CM}recoverExecutions.policy=Sometimes\n"
    )
    env = {"QWC_CLUSTERMODE_AUTOTAKEOVER_DELAY": "-1"}
    problems = problems_of(write(tmp_path, text), environ=env)
    assert [(p.key, p.line) for p in problems] == [
        (CM + "heartbeat.intervall", 1),
        (CM + "autotakeover.enabled", 2),
        (CM + "heartbeat.considerDead", 3),
        (CM + "recoverExecutions.policy", 4),
        (CM + "autotakeover.delay", None),
    ]


def test_bad_file_value_is_reported_even_when_the_environment_overrides_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, f"{CM}heartbeat.interval=abc\n")
    (problem,) = problems_of(path, environ={"QWC_CLUSTERMODE_HEARTBEAT_INTERVAL": "5"})
    assert (problem.key, problem.line, problem.value) == (CM + "heartbeat.interval", 1, "abc")


def test_rule_between_file_and_environment_names_both(tmp_path: Path) -> None:
    path = write(tmp_path, f"\n{CM}heartbeat.considerInactive=100\n")
    env = {"QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD": "90"}
    (problem,) = problems_of(path, environ=env)
    assert problem.key == CM + "heartbeat.considerDead"
    assert problem.source == "environment (QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD)"
    assert f"considerInactive = 100 ({path}:2)" in problem.allowed


def test_secret_is_masked() -> None:
    env = {"QWC_MANAGER_TOKEN": "s3cret", "QWC_MANAGER_TOKEN_X": "1"}
    settings = load_settings(environ=env)  # QWC_MANAGER_TOKEN_X is not a clusterMode variable
    assert settings.manager_token is not None
    assert settings.manager_token.get_secret_value() == "s3cret"
    assert "s3cret" not in str(settings)
    (problem,) = problems_of(environ={}, overrides={"manager_token": 12345})
    assert (problem.key, problem.value) == ("qwcontrol.manager.token", "***")


def test_known_key_in_wrong_case_outside_cluster_mode_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "qwcontrol.redis.ur=redis://x\nqwcontrol.Redis.url=redis://x\n")
    (problem,) = problems_of(path, environ={})  # the unknown qwcontrol.redis.ur is not ours
    assert (problem.key, problem.line) == ("qwcontrol.Redis.url", 2)
    assert "did you mean `qwcontrol.redis.url`?" in problem.allowed
