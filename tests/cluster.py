"""Test helpers for runs with real ``qwc`` processes against real Redis and SQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from schemas.codec import decode_as
from schemas.keys import Keys
from schemas.messages import MembershipChange
from workers.bus.connect import connect

T = TypeVar("T")

QWC = str(Path(sys.executable).with_name("qwc"))

FAST_TIMINGS = {
    "QWC_CLUSTERMODE_HEARTBEAT_INTERVAL": "0.2",
    "QWC_CLUSTERMODE_HEARTBEAT_DELAY": "0",
    "QWC_CLUSTERMODE_HEARTBEAT_CONSIDERINACTIVE": "0.6",
    "QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD": "1.2",
}


def wait_for(
    condition: Callable[[], T], *, timeout_s: float = 10.0, every_s: float = 0.02, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(every_s)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


@dataclass
class Cluster:
    """Real ``qwc`` processes sharing one Redis URL, one database URL and one data directory."""

    redis_url: str
    database_url: str
    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
        env.update(FAST_TIMINGS)
        env.update(
            QWC_REDIS_URL=self.redis_url,
            QWC_DATABASE_URL=self.database_url,
            QWC_HOME=str(self.home),
        )
        env.update(self.extra_env)
        return env

    def client(self) -> redis.Redis:
        return connect(self.redis_url)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.home / f"proc-{len(self.procs)}-{args[0]}.log"
        self.home.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [QWC, "-v", *args],
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group: stop_all kills it whole
            )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def node(
        self, name: str, member_uuid: str | None = None
    ) -> tuple[str, subprocess.Popen[bytes]]:
        member_uuid = member_uuid or new_uuid()
        return member_uuid, self.start("node", "--uuid", member_uuid, "--name", name)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [QWC, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"qwc {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def members_json(self) -> list[dict[str, Any]]:
        return json.loads(self.run("members", "--json").stdout)  # type: ignore[no-any-return]

    def stop_all(self) -> None:
        """SIGKILL every process the test started: each one's process group (a node's RQ
        worker and the commands it runs), then anything else left with this cluster's
        ``QWC_HOME`` (the children ``qwc cluster up`` starts in sessions of their own, the
        children of a process that was already reaped).
        Shutdown is not the subject of a teardown; a test about stopping stops its
        processes itself (SIGTERM) before the test ends."""
        for p in self.procs:
            if p.returncode is None:  # not reaped: its pid (= its group's id) is still its own
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.wait(10)
        for pid in pids_with_env(f"QWC_HOME={self.home}"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def dump_logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs
        )


def pids_with_env(entry: str) -> list[int]:
    """Processes whose environment holds ``entry`` (``NAME=value``), other than this one."""
    mark = f"{entry}\0".encode()
    found = []
    for path in Path("/proc").iterdir():
        if not path.name.isdigit() or int(path.name) == os.getpid():
            continue
        try:
            if mark in (path / "environ").read_bytes():
                found.append(int(path.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def membership_changes(
    client: redis.Redis, keys: Keys, member_uuid: str | None = None
) -> list[MembershipChange]:
    """Every change on the membership stream (optionally of one member), in stream order."""
    out = []
    for _id, fields in client.xrange(keys.membership):
        change = decode_as(fields[b"m"], MembershipChange)
        if member_uuid is None or change.uuid == member_uuid:
            out.append(change)
    return out


def states_by_uuid(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["uuid"]: r["state"] for r in rows}


def iter_states(changes: list[MembershipChange]) -> Iterator[str]:
    for c in changes:
        yield c.to_state.value
