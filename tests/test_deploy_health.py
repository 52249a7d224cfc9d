"""``qwc health`` (the image's HEALTHCHECK) against real servers: 0 when Redis answers and
the store is migrated, 1 when either is not, and it never starts the embedded Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from tests.cluster import QWC
from workers.store import create_store_engine, upgrade


def health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    return subprocess.run(
        [QWC, "health", *args], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def migrated_sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = create_store_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthy_when_redis_answers_and_the_store_is_migrated(
    embedded_redis_url: str, tmp_path: Path
) -> None:
    env = {
        "QWC_REDIS_URL": embedded_redis_url,
        "QWC_DATABASE_URL": migrated_sqlite(tmp_path / "qwc.db"),
        "QWC_HOME": str(tmp_path / "home"),
    }
    result = health(env, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"redis": "ok", "store": "ok"}


def test_unhealthy_when_redis_does_not_answer(tmp_path: Path) -> None:
    env = {
        "QWC_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
        "QWC_DATABASE_URL": migrated_sqlite(tmp_path / "qwc.db"),
        "QWC_HOME": str(tmp_path / "home"),
    }
    result = health(env)
    assert result.returncode == 1
    assert "redis Redis does not answer: ConnectionError" in result.stderr
    assert result.stdout == "store ok\n"


def test_unhealthy_when_the_store_is_not_migrated(embedded_redis_url: str, tmp_path: Path) -> None:
    env = {
        "QWC_REDIS_URL": embedded_redis_url,
        "QWC_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "QWC_HOME": str(tmp_path / "home"),
    }
    result = health(env, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["redis"] == "ok"
    assert "run `qwc db upgrade`" in report["store"]


def test_never_starts_the_embedded_redis(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = health({"QWC_HOME": str(home)}, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["redis"].endswith("is not running")
    assert not (home / "redis.pid").exists()
    assert not (home / "redis.conf").exists()
