"""compose.yaml, checked without a Docker engine: valid against the compose specification's
JSON schema, the issue's topology, every command a real ``qwc`` command, every environment
variable one that ``qwc`` reads, the mounted config file and the secrets loadable as settings.

tests/data/compose-spec.json is ``schema/compose-spec.json`` of the compose-spec repository
(Apache-2.0), unchanged; tests/data/compose-spec.source.md says which commit.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import click
import jsonschema_rs
import pytest
import yaml

from schemas.properties import read_properties
from schemas.settings import load_settings
from tests.deploy_checks import interpolate, known_env_names, resolve_qwc

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
QWC_IMAGE = "qwcontrol-cluster"


def env_example() -> dict[str, str]:
    return {k: e.value for k, e in read_properties(ENV_EXAMPLE).items()}


def _walk(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_walk(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, env) for k, v in value.items()}
    return value


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml as compose sees it: YAML anchors and merges resolved, then interpolated
    with ``env`` (default: deploy/env.example)."""
    raw = yaml.safe_load(COMPOSE.read_text())
    return _walk(raw, env_example() if env is None else env)  # type: ignore[no-any-return]


def qwc_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if s.get("image", "").startswith(QWC_IMAGE)}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_valid_against_the_compose_specification_schema() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    errors = [str(e) for e in validator.iter_errors(load_compose())]
    assert errors == []


def test_the_schema_check_can_fail() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    doc = load_compose()
    doc["services"]["liveness-1"]["restart"] = ["always"]
    doc["services"]["liveness-1"]["comand"] = ["worker", "liveness"]
    assert len(list(validator.iter_errors(doc))) == 2


def test_the_topology_of_the_issue() -> None:
    doc = load_compose()
    services = qwc_services(doc)
    kinds = Counter(tuple(s["command"][:2]) for s in services.values())
    assert kinds[("worker", "liveness")] == 2
    assert kinds[("worker", "takeover")] == 2
    assert kinds[("worker", "recovery")] == 1
    assert kinds[("worker", "notify")] == 1
    assert kinds[("db", "upgrade")] == 1
    managers = [s for s in services.values() if s["command"][0] == "manager"]
    assert len(managers) == 1 and managers[0]["ports"] == ["4440:4440"]
    assert managers[0]["command"][1:] == ["--host", "0.0.0.0", "--port", "4440"]
    nodes = [s["command"] for s in services.values() if s["command"][0] == "node"]
    uuids = [c[c.index("--uuid") + 1] for c in nodes]
    assert len(nodes) == 3 and len(set(uuids)) == 3
    assert all(str(uuid.UUID(u)) == u for u in uuids)
    consumers = [
        c[c.index("--consumer") + 1]
        for c in (s["command"] for s in services.values())
        if "--consumer" in c
    ]
    assert len(consumers) == len(set(consumers)) == 6  # a stable, unique name per replica
    assert doc["services"]["redis"]["image"].startswith("redis:")
    assert doc["services"]["postgres"]["image"].startswith("postgres:")


def test_every_service_command_is_a_real_qwc_command() -> None:
    services = qwc_services(load_compose())
    assert len(services) == 11
    paths = {name: resolve_qwc(s["command"]) for name, s in services.items()}
    assert paths["liveness-1"] == ["qwc", "worker", "liveness"]
    assert paths["manager"] == ["qwc", "manager"]
    assert paths["node-1"] == ["qwc", "node"]
    assert paths["migrate"] == ["qwc", "db", "upgrade"]


def test_the_command_check_can_fail() -> None:
    with pytest.raises(click.UsageError):
        resolve_qwc(["worker", "livenes"])
    with pytest.raises(click.UsageError):
        resolve_qwc(["worker", "liveness", "--consumers", "x"])
    with pytest.raises(click.UsageError):
        resolve_qwc(["manager", "--port", "99999"])
    with pytest.raises(click.UsageError):  # a group without its sub-command
        resolve_qwc(["worker"])


def test_every_qwc_healthcheck_is_a_real_qwc_command() -> None:
    for name, service in qwc_services(load_compose()).items():
        check = service["healthcheck"]
        if name == "migrate":
            assert check == {"disable": True}
            continue
        assert check["test"][:2] == ["CMD", "qwc"], name
        assert resolve_qwc(check["test"][2:]) == ["qwc", "health"]


def test_every_environment_variable_is_one_qwc_reads() -> None:
    known = known_env_names()
    assert {"QWC_REDIS_URL", "QWC_DATABASE_URL", "QWC_CONFIG", "QWC_LOG_FORMAT"} <= known
    assert "QWC_REDIS_URLS" not in known
    for name, service in qwc_services(load_compose()).items():
        unknown = set(env_of(service)) - known
        assert unknown == set(), f"{name}: {unknown}"


def test_each_qwc_service_loads_valid_settings_from_the_mounted_file_and_its_env() -> None:
    for name, service in qwc_services(load_compose()).items():
        env = env_of(service)
        target = env["QWC_CONFIG"]
        mounts = [v for v in service["volumes"] if v.split(":")[1] == target]
        assert len(mounts) == 1 and mounts[0].endswith(":ro"), name  # read-only
        source = ROOT / mounts[0].split(":")[0]
        assert source == ROOT / "deploy" / "qwcontrol-config.properties"
        settings = load_settings(source, environ=env)
        assert settings.redis_url is not None and "@redis:6379" in settings.redis_url
        assert settings.database_url is not None and "@postgres:5432/" in settings.database_url
        assert settings.autotakeover_enabled and settings.recover_enabled
        if name == "manager":
            assert settings.manager_token is not None
            assert settings.manager_token.get_secret_value() == env_example()["QWC_MANAGER_TOKEN"]


def test_secrets_come_from_the_environment_not_from_files() -> None:
    text = COMPOSE.read_text() + (ROOT / "deploy" / "qwcontrol-config.properties").read_text()
    for secret in ("change-me", "password=", "token="):
        assert secret not in text.lower()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    assert required == {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "QWC_MANAGER_TOKEN"}
    assert required <= set(env_example())
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        load_compose({k: v for k, v in env_example().items() if k != "REDIS_PASSWORD"})


def test_healthchecks_restart_policies_and_start_order() -> None:
    doc = load_compose()
    for name in ("redis", "postgres"):
        service = doc["services"][name]
        assert service["restart"] == "unless-stopped" and service["healthcheck"]["test"], name
    for name, service in qwc_services(doc).items():
        deps = service["depends_on"]
        if name == "migrate":
            assert service["restart"] == "no"
            assert deps == {"postgres": {"condition": "service_healthy"}}
            continue
        assert service["restart"] == "unless-stopped", name
        assert deps == {
            "redis": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
        assert service["stop_grace_period"] == "15s" and service["init"] is True, name
