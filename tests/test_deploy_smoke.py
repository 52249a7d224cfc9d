"""deploy/smoke's files, checked without a Docker engine: the override it lays over the real
compose.yaml changes nothing but the networking, the ports and the Redis / PostgreSQL
images; the copy of compose.yaml loses only its published ports; the build's pip.conf
carries only what reaches the network. The run itself needs root and Docker: `deploy/smoke`
(`QWC_CI_DOCKER=1 .ci/run`), docs/operations.md "Smoke run"."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from deploy.smokelib import files
from schemas.settings import load_settings
from tests.test_deploy_compose import COMPOSE, ENV_EXAMPLE, SCHEMA, _walk, env_example, env_of

PORTS = files.Ports(redis=16379, postgres=15432, manager=4440)
IMAGES = {"redis": "qwc-smoke/redis:local", "postgres": "qwc-smoke/postgres:local"}
CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "qwcontrol-config.properties"


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base`` as compose does for these keys: environment merged
    by name, extra_hosts appended, the other keys replaced."""
    out = copy.deepcopy(base)
    for name, service in override["services"].items():
        target = out["services"][name]
        for key, value in service.items():
            if key == "environment":
                target[key] = {**target.get(key, {}), **value}
            elif key == "extra_hosts":
                target[key] = [*target.get(key, []), *value]
            else:
                target[key] = value
    return out


def smoke_docs(ports: files.Ports = PORTS) -> tuple[dict[str, Any], dict[str, Any]]:
    """(compose.yaml as compose sees it, the same with the copy and override of the run)."""
    text = COMPOSE.read_text()
    stripped, _ = files.without_published_ports(text)
    env = env_example()
    original = _walk(yaml.safe_load(text), env)
    doc = files.override(stripped, original["services"], ports, IMAGES)
    return original, merged(_walk(yaml.safe_load(stripped), env), _walk(doc, env))


def test_the_override_changes_only_networking_ports_and_images() -> None:
    original, smoke = smoke_docs()
    assert set(smoke["services"]) == set(original["services"])
    for name, service in smoke["services"].items():
        before = original["services"][name]
        changed = {k for k in service.keys() | before.keys() if service.get(k) != before.get(k)}
        assert service["network_mode"] == "host", name
        if name in ("redis", "postgres"):
            assert changed == {"network_mode", "image", "environment"}, name
            assert service["image"] == IMAGES[name]
            added = set(env_of(service)) - set(env_of(before))
            assert added == {"REDIS_PORT" if name == "redis" else "PGPORT"}
            continue
        allowed = {"network_mode", "extra_hosts", "environment"} | (
            {"ports"} if name == "manager" else set()
        )
        assert changed <= allowed, name
        assert service["extra_hosts"] == ["redis:127.0.0.1", "postgres:127.0.0.1"]
        env, env_before = env_of(service), env_of(before)
        assert {k for k in env if env[k] != env_before.get(k)} == {
            "QWC_REDIS_URL",
            "QWC_DATABASE_URL",
        }
        assert env["QWC_REDIS_URL"] == env_before["QWC_REDIS_URL"].replace(":6379/", ":16379/")
        assert env["QWC_DATABASE_URL"] == env_before["QWC_DATABASE_URL"].replace(
            ":5432/", ":15432/"
        )
        settings = load_settings(CONFIG, environ=env)
        assert settings.redis_url is not None and "@redis:16379/0" in settings.redis_url
    assert "ports" not in smoke["services"]["manager"]
    assert smoke["services"]["manager"]["command"] == original["services"]["manager"]["command"]


def test_the_smoke_compose_is_valid_against_the_compose_specification() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    assert [str(e) for e in validator.iter_errors(smoke_docs()[1])] == []


def test_only_the_published_ports_are_removed_from_the_copy() -> None:
    text = COMPOSE.read_text()
    stripped, removed = files.without_published_ports(text)
    assert removed == ["    ports:", '      - "4440:4440"']
    original, copied = yaml.safe_load(text), yaml.safe_load(stripped)
    del original["services"]["manager"]["ports"]
    assert copied == original
    with pytest.raises(ValueError, match="block list"):
        files.without_published_ports('services:\n  a:\n    ports: ["1:1"]\n')


def test_the_manager_command_moves_only_when_its_port_is_taken() -> None:
    text = COMPOSE.read_text()
    assert files.manager_command(text, 4440) is None
    assert files.manager_command(text, 4441) == ["manager", "--host", "0.0.0.0", "--port", "4441"]
    _, smoke = smoke_docs(files.Ports(redis=16379, postgres=15432, manager=4441))
    assert smoke["services"]["manager"]["command"][-1] == "4441"


def test_a_compose_file_the_override_cannot_follow_is_refused() -> None:
    with pytest.raises(ValueError, match="QWC_REDIS_URL 0 times"):
        files.moved_url("services: {}\n", "QWC_REDIS_URL", 1, "redis")
    with pytest.raises(ValueError, match="no redis:PORT"):
        files.moved_url('    QWC_REDIS_URL: "redis://cache/0"\n', "QWC_REDIS_URL", 1, "redis")


def test_the_env_file_gets_fresh_secrets_and_keeps_the_rest() -> None:
    tokens = iter(["t1", "t2", "t3", "t4"])
    env = files.parse_env(files.smoke_env(ENV_EXAMPLE.read_text(), lambda: next(tokens)))
    assert env.keys() == env_example().keys()
    assert sorted(v for v in env.values() if v.startswith("t")) == ["t1", "t2", "t3", "t4"]
    assert env["COMPOSE_PROJECT_NAME"] == "qwcontrol"
    assert not any("change-me" in v for v in env.values())


def test_the_build_pip_conf_keeps_only_what_reaches_the_network() -> None:
    listed = (
        ":env:.cert='/etc/ssl/certs/ca-certificates.crt'\n"
        "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
        "global.constraint='/etc/xdg/pip/constraints.txt'\n"
        "global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'\n"
        "global.find-links='/opt/wheels'\n"
        "download.index-url='https://elsewhere.example/simple'\n"
    )
    settings = files.pip_settings(listed, {"PIP_DEFAULT_TIMEOUT": "180", "PIP_FIND_LINKS": "/x"})
    assert settings == {
        "cert": "/etc/ssl/certs/ca-certificates.crt",
        "extra-index-url": "file:///opt/pypi/simple https://mirror.example/simple",
        "default-timeout": "180",
    }
    assert files.pip_conf(settings) == (
        "[global]\nextra-index-url = https://mirror.example/simple\n"
        f"default-timeout = 180\ncert = {files.PIP_CERT_TARGET}\n"
    )
    assert files.pip_conf(files.pip_settings("global.find-links='/opt/wheels'\n", {})) is None
