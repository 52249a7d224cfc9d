"""The spawner in-process, with real commands: each in a session of its own, its output and
exit code handed over, SIGPIPE at its default, the program found on the command's own
PATH, nothing leaked when a command cannot start, and exits found where there is no
pidfd. (What a command leaves in its group, timeouts and ends: tests/test_node_pool.py.)"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from workers.node import spawner as spawner_module
from workers.node.spawner import Spawner


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    s = Spawner(grace_s=0.5)
    try:
        yield s
    finally:
        s.close(10)


def run(spawner: Spawner, argv: list[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Spawn ``argv`` in the spawner's thread and wait for its end: ``code`` and ``output``,
    or ``error`` when it could not start."""
    done, output, result = threading.Event(), bytearray(), {}

    def ended(code: int | None) -> None:
        result.update(code=code, output=bytes(output))
        done.set()

    def start() -> None:
        try:
            result["pid"] = spawner.spawn(
                argv, dict(os.environ) if env is None else env, feed=output.extend, on_exit=ended
            )
        except OSError as exc:
            result["error"] = exc
            done.set()

    spawner.call_soon(start)
    assert done.wait(10), argv
    return result


def test_a_command_leads_its_own_session_and_hands_over_its_output_and_exit_code(
    spawner: Spawner,
) -> None:
    code = (
        "import os, sys; print(os.getpgid(0) == os.getpid() == os.getsid(0)); "
        "print('err', file=sys.stderr); sys.stdout.flush(); sys.exit(3)"
    )
    result = run(spawner, [sys.executable, "-c", code])
    assert (result["code"], result["output"]) == (3, b"True\nerr\n")
    killed = run(spawner, ["sh", "-c", "kill -TERM $$"])
    assert killed["code"] == -signal.SIGTERM


def test_sigpipe_is_at_its_default_in_the_command(spawner: Spawner) -> None:
    # Python ignores SIGPIPE, and an ignored signal stays ignored across exec.
    result = run(spawner, ["grep", "SigIgn", "/proc/self/status"])
    ignored = int(result["output"].split()[-1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), result["output"]


def test_the_program_is_found_on_the_commands_own_path(spawner: Spawner, tmp_path: Path) -> None:
    program = tmp_path / "qwc-test-hello"
    program.write_text("#!/bin/sh\necho hello from $0\n")
    program.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    result = run(spawner, ["qwc-test-hello"], env)
    assert (result["code"], result["output"]) == (0, f"hello from {program}\n".encode())
    missing = run(spawner, ["qwc-test-hello"], {"PATH": "/usr/bin:/bin"})
    assert isinstance(missing["error"], FileNotFoundError)


def test_a_command_that_cannot_start_raises_and_leaves_no_descriptor_open(
    spawner: Spawner,
) -> None:
    before = sorted(os.listdir("/proc/self/fd"))
    result = run(spawner, ["/nonexistent/qwc-test-program"])
    assert isinstance(result["error"], FileNotFoundError)
    assert sorted(os.listdir("/proc/self/fd")) == before
    with pytest.raises(ValueError):
        spawner.spawn([], {}, feed=print, on_exit=print)


def test_exits_are_polled_where_there_is_no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spawner_module, "_exit_fd", lambda pid: None)
    polling = Spawner(grace_s=0.5)
    try:
        result = run(polling, ["sh", "-c", "echo polled; exit 5"])
        assert (result["code"], result["output"]) == (5, b"polled\n")
    finally:
        polling.close(10)


def test_close_waits_for_the_commands_still_running(tmp_path: Path) -> None:
    s = Spawner(grace_s=0.5)
    ended: list[int | None] = []
    gate = tmp_path / "gate"
    argv = ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done; exit 7"]
    s.call_soon(lambda: s.spawn(argv, dict(os.environ), feed=print, on_exit=ended.append))
    closer = threading.Thread(target=s.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and ended == []  # the command still runs: close waits
    gate.touch()
    closer.join(10)
    assert not closer.is_alive() and ended == [7]
