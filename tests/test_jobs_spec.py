"""Job specs with executors, timeout and concurrency: what is accepted, how it is stored, and
every refusal naming its field (pure: no store)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, get_args

import pytest

from schemas.tables import CONCURRENCY_POLICIES
from tests.test_node_executors import job
from workers.jobs import (
    CommandExecutor,
    HttpExecutor,
    PythonExecutor,
    ShellExecutor,
    SpecError,
    describe,
    executor_columns,
    executor_json,
    executor_of,
    job_runs,
    parse_spec,
)
from workers.jobs.executor import masked_executor
from workers.jobs.spec import Concurrency

URL = "http://127.0.0.1:8080/hook"


@pytest.mark.parametrize(
    ("fields", "executor"),
    [
        ({"command": "echo 'a b'"}, CommandExecutor(argv=("echo", "a b"))),
        ({"command": ["ls", "-l"]}, CommandExecutor(argv=("ls", "-l"))),
        ({"shell": "echo $HOME | wc -c"}, ShellExecutor(script="echo $HOME | wc -c")),
        (
            {"http": {"method": "post", "url": URL, "expect_status": 201, "timeout": 2.5}},
            HttpExecutor(method="POST", url=URL, expect_status=201, timeout=2.5),
        ),
        ({"http": {"method": "GET", "url": URL}}, HttpExecutor(method="GET", url=URL)),
        ({"python": "pkg.mod:fn"}, PythonExecutor(callable="pkg.mod:fn")),
        (
            {"python": {"callable": "pkg.mod:Cls.method", "kwargs": {"n": 1, "l": [1, "x"]}}},
            PythonExecutor(callable="pkg.mod:Cls.method", kwargs={"n": 1, "l": [1, "x"]}),
        ),
    ],
)
def test_each_executor_kind(fields: dict[str, Any], executor: Any) -> None:
    spec = parse_spec({"name": "j", **fields})
    assert spec.executor == executor
    kind, command, stored = executor_columns(spec.executor)
    assert executor_of(kind, command, stored) == executor  # the store's columns round-trip
    assert (kind == "command") == bool(command) and (kind == "command") == (stored == {})


def test_the_spec_knows_every_policy_the_table_allows() -> None:
    assert get_args(Concurrency) == CONCURRENCY_POLICIES


def test_timeout_and_concurrency() -> None:
    spec = parse_spec({"name": "j", "command": "true", "timeout": 1.5, "concurrency": "Replace"})
    assert (spec.timeout, spec.concurrency) == (1.5, "replace")
    default = parse_spec({"name": "j", "command": "true"})
    assert (default.timeout, default.concurrency) == (None, "forbid")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "give exactly one executor: command, shell, http or python"),
        ({"command": "a", "shell": "b"}, "exactly one executor: command, shell, http or python "
         "(found command, shell)"),
        ({"command": "  "}, "field 'command': the command is empty"),
        ({"shell": " "}, "field 'shell': the script is empty"),
        ({"http": {"method": "FETCH", "url": URL}}, "field 'http.method': 'FETCH' is not an HTTP"),
        ({"http": {"method": "GET", "url": "ftp://x/y"}}, "field 'http.url': 'ftp://x/y' is not "
         "an http:// or https:// URL"),
        ({"http": {"method": "GET", "url": "http://h:99999/"}}, "field 'http.url'"),
        ({"http": {"method": "GET"}}, "field 'http.url': Field required"),
        ({"http": {"method": "GET", "url": URL, "expect_status": 99}}, "'http.expect_status'"),
        ({"http": {"method": "GET", "url": URL, "timeout": 0}}, "field 'http.timeout'"),
        ({"http": {"method": "GET", "url": URL, "verb": 1}}, "field 'http.verb': Extra inputs"),
        ({"python": "module_only"}, "field 'python.callable': 'module_only' is not "
         "pkg.module:function"),
        ({"python": "pkg.mod:fn()"}, "field 'python.callable'"),
        ({"python": {"callable": "m:f", "kwargs": [1]}}, "field 'python.kwargs': Input should be "
         "a valid dictionary"),
        ({"command": "true", "timeout": -1}, "field 'timeout': Input should be greater than 0"),
        ({"command": "true", "timeout": "inf"}, "field 'timeout'"),
        ({"command": "true", "concurrency": "sometimes"}, "field 'concurrency': Input should be "
         "'allow', 'forbid' or 'replace'"),
    ],
)  # fmt: skip
def test_a_bad_spec_names_the_field(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"name": "j", **fields}, "jobs.yaml: entry [0] ")
    assert any(line.startswith("jobs.yaml: entry [0] ") for line in caught.value.problems)
    assert problem in str(caught.value)


def test_python_kwargs_must_be_plain_json() -> None:
    """A YAML date is not JSON: refused at import, not when the store writes it."""
    kwargs = {"d": datetime.date(2024, 1, 2)}
    with pytest.raises(SpecError, match=r"field 'python\.kwargs': keyword arguments must be"):
        parse_spec({"name": "j", "python": {"callable": "m:f", "kwargs": kwargs}})


def test_a_row_without_a_valid_executor_is_listed_as_invalid() -> None:
    """Listings never fail on one bad row (a command job with an empty argv, a spec edited
    by hand): they say what is wrong with it."""
    bad = dataclasses.replace(job(command="true"), command=())
    assert executor_json(bad) == {
        "kind": "command",
        "invalid": "argv: Tuple should have at least 1 item after validation, not 0",
    }
    assert job_runs(bad).startswith("invalid command: argv: Tuple should have at least 1")
    hand_edited = dataclasses.replace(job(shell="x"), executor_spec={"script": "x", "extra": 1})
    assert executor_json(hand_edited)["invalid"] == "shell.extra: Extra inputs are not permitted"


def test_listings_mask_credentials_and_describe_what_runs() -> None:
    http = HttpExecutor(
        method="POST",
        url="https://user:s3cret@example.test/hook",
        headers={"Authorization": "Bearer abc", "X-Api-Key": "k", "Accept": "text/plain"},
    )
    shown = masked_executor(http)
    assert shown["headers"] == {"Authorization": "***", "X-Api-Key": "***", "Accept": "text/plain"}
    assert shown["url"] == "https://user:***@example.test/hook" and "s3cret" not in str(shown)
    assert shown["kind"] == "http" and shown["timeout_s"] == 30.0
    assert describe(http) == "POST https://user:***@example.test/hook"
    assert describe(CommandExecutor(argv=("echo", "hi"))) == "echo hi"
    assert describe(ShellExecutor(script="a | b")) == "sh -c 'a | b'"
    assert describe(PythonExecutor(callable="m:f")) == "python m:f"


def test_zone_misfire_flags_owner_and_id_of_a_spec() -> None:
    spec = parse_spec(
        {"name": "x", "command": "true", "timezone": " Europe/Paris ", "misfire": "FIRE_ONCE",
         "misfire_grace": 30, "schedule_enabled": False, "execution_enabled": False,
         "as": " node-1 ", "id": "0b2e3c6a-7d41", "description": "d"}
    )  # fmt: skip
    assert (spec.time_zone, spec.misfire, spec.misfire_grace) == ("Europe/Paris", "fire_once", 30)
    assert (spec.enabled, spec.execution_enabled, spec.description) == (False, False, "d")
    assert (spec.owner, spec.id) == ("node-1", "0b2e3c6a-7d41")
    upper = "AAAAAAAA-0000-4000-8000-000000000001"
    assert parse_spec({"name": "x", "command": "t", "owner": upper}).owner == upper.lower()
    assert parse_spec({"name": "x", "command": "t", "time_zone": ""}).time_zone is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"time_zone": "Europe/Pariss"}, "field 'time_zone': unknown time zone 'Europe/Pariss'"),
        ({"misfire": "later"}, "field 'misfire': Input should be 'skip' or 'fire_once'"),
        (
            {"misfire_grace": 0.5},
            "field 'misfire_grace': Input should be greater than or equal to 1",
        ),
        ({"misfire_grace": 700000}, "field 'misfire_grace': Input should be less than or equal"),
        ({"id": "a/b"}, "field 'id': String should match pattern"),
    ],
)
def test_zone_and_misfire_refusals_name_the_field(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"name": "x", "command": "true", **fields})
    assert problem in "\n".join(caught.value.problems)


def test_a_command_line_is_validated_once_per_member_and_an_empty_one_never_passes() -> None:
    first = executor_of("command", ["echo", "a"], {})
    assert executor_of("command", ("echo", "a"), {}) is first  # the member's cache
    assert executor_of("command", ["echo", "b"], {}).argv == ("echo", "b")
    for _ in range(2):  # a refusal is not remembered as a success
        with pytest.raises(ValueError):
            executor_of("command", [], {})
