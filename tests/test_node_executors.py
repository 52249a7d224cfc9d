"""Executors run for real: commands and shell scripts as processes, a Python callable in its
child process, an HTTP call against a local server; each execution's identity in its
environment, and none of the member's QWC_* settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from workers.jobs import executor_columns, parse_spec
from workers.node.executors import (
    ExecutionIdentity,
    HttpRun,
    ProcessRun,
    execution_env,
    prepare,
    run_http,
)
from workers.node.output import OutputCollector
from workers.store import JobRow

ROOT = Path(__file__).resolve().parent.parent
MEMBER = "aaaaaaaa-0000-4000-8000-000000000001"
IDENTITY = ExecutionIdentity("job-1", "exec-1", 1_700_000_000_123, 2, MEMBER)
MEMBER_ENV = {
    "PATH": os.environ["PATH"],
    "HOME": "/tmp",
    "QWC_DATABASE_URL": "postgresql+psycopg://qwc:s3cret@db/qwc",
    "QWC_MANAGER_TOKEN": "t0ken",
}


def job(**fields: Any) -> JobRow:
    """A job row whose executor is given as spec fields (``command="..."``, ``http={...}``)."""
    spec = parse_spec({"name": "j", **fields})
    kind, command, stored = executor_columns(spec.executor)
    return JobRow(
        id="job-1", project="p", group_name="", name="j", command=tuple(command),
        schedule=None, enabled=True, owner_uuid=MEMBER, owner_epoch=1, retry_count=0,
        retry_delay_s=0.0, next_fire_ms=None, last_fire_ms=None, modified_by=MEMBER,
        modified_ms=0, created_ms=0, executor=kind, executor_spec=stored,
    )  # fmt: skip


def run(process: ProcessRun | HttpRun, timeout_s: float = 30) -> tuple[int, str]:
    """Start it as the pool does (own process group, stdin closed, one output stream)."""
    assert isinstance(process, ProcessRun)
    done = subprocess.run(
        process.argv, env=process.env, cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        timeout=timeout_s,
    )  # fmt: skip
    collector = OutputCollector(65536)
    collector.feed(done.stdout)
    return done.returncode, collector.text()


def test_the_environment_of_an_execution() -> None:
    env = execution_env(IDENTITY, MEMBER_ENV)
    assert env == {
        "PATH": MEMBER_ENV["PATH"],
        "HOME": "/tmp",
        "QWC_JOB_ID": "job-1",
        "QWC_EXECUTION_ID": "exec-1",
        "QWC_FIRE_TIME": "2023-11-14T22:13:20.123+00:00",
        "QWC_FIRE_TIME_MS": "1700000000123",
        "QWC_ATTEMPT": "2",
        "QWC_MEMBER_UUID": MEMBER,
    }
    assert IDENTITY.headers()["X-Qwc-Execution-Id"] == "exec-1"
    assert IDENTITY.headers()["X-Qwc-Member-Uuid"] == MEMBER


def test_a_command_runs_its_argv_without_a_shell() -> None:
    process = prepare(job(command="printenv QWC_EXECUTION_ID QWC_ATTEMPT"), IDENTITY,
                      base_env=MEMBER_ENV)  # fmt: skip
    assert isinstance(process, ProcessRun)
    assert process.argv == ("printenv", "QWC_EXECUTION_ID", "QWC_ATTEMPT")
    assert run(process) == (0, "exec-1\n2\n")
    literal = prepare(job(command="echo $HOME '|' x"), IDENTITY, base_env=MEMBER_ENV)
    assert run(literal) == (0, "$HOME | x\n")  # no shell: nothing expanded or piped


def test_a_shell_script_runs_with_sh_and_keeps_the_member_settings_out() -> None:
    script = 'echo "$QWC_JOB_ID" | tr a-z A-Z; echo "db=${QWC_DATABASE_URL:-none}" >&2; exit 3'
    process = prepare(job(shell=script), IDENTITY, base_env=MEMBER_ENV)
    assert isinstance(process, ProcessRun) and process.argv == ("/bin/sh", "-c", script)
    assert run(process) == (3, "JOB-1\ndb=none\n")


@pytest.mark.parametrize(
    ("target", "kwargs", "code", "output"),
    [
        ("tests.pycall_target:greet", {"name": "ann", "times": 2},
         0, 'hello ann\nhello ann\n{"name": "ann", "execution": "exec-1"}\n'),
        ("tests.pycall_target:doubled", {"x": 21}, 0, "42\n"),
        ("tests.pycall_target:Greeter.hi", {}, 0, '"hi"\n'),
        ("tests.pycall_target:quits", {"code": 4}, 4, ""),
        ("tests.pycall_target:boom", {}, 1, "RuntimeError: it went wrong"),
        ("tests.pycall_target:greet", {"nom": "x"}, 1, "unexpected keyword argument 'nom'"),
        ("tests.pycall_target:missing", {}, 2, "cannot call tests.pycall_target:missing: "
         "AttributeError"),
        ("tests.no_such_module:f", {}, 2, "ModuleNotFoundError: No module named "
         "'tests.no_such_module'"),
        ("tests.pycall_target:not_callable", {}, 2, "is a int, not a callable"),
    ],
)  # fmt: skip
def test_a_python_callable_runs_in_a_child_process(
    target: str, kwargs: dict[str, Any], code: int, output: str
) -> None:
    process = prepare(job(python={"callable": target, "kwargs": kwargs}), IDENTITY,
                      base_env=MEMBER_ENV)  # fmt: skip
    assert isinstance(process, ProcessRun)
    assert process.argv[1:] == ("-m", "workers.node.pycall", target)
    returncode, text = run(process)
    assert returncode == code, text
    assert output in text if code else text == output


def test_a_python_callable_ends_with_its_process_group(tmp_path: Path) -> None:
    """What a timeout or an abort does to any execution: the group ends, grandchildren too."""
    pid_file = tmp_path / "pids"
    process = prepare(
        job(python={"callable": "tests.pycall_target:spawns_and_waits",
                    "kwargs": {"pid_file": str(pid_file)}}),
        IDENTITY, base_env=MEMBER_ENV,
    )  # fmt: skip
    assert isinstance(process, ProcessRun)
    proc = subprocess.Popen(process.argv, env=process.env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text().endswith("\n"):
            assert time.monotonic() < deadline and proc.poll() is None, "it never started"
            time.sleep(0.02)
        caller, grandchild = map(int, pid_file.read_text().split())
        assert caller == proc.pid and os.getpgid(grandchild) == proc.pid
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        while time.monotonic() < deadline and _alive(grandchild):
            time.sleep(0.02)
        assert not _alive(grandchild)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (not reaped yet by init) is gone
        return f.read().split(") ")[1][0] != "Z"


# --- HTTP -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.release.wait(10)
        if self.path == "/dribble":
            self._dribble()
            return
        status = {"/created": 201, "/fail": 500, "/moved": 301}.get(self.path, 200)
        body = b"x" * 5000 + b"END" if self.path == "/big" else self._echo()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        sent = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        body = b"got " + sent
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _echo(self) -> bytes:
        seen = {k: v for k, v in self.headers.items() if k.lower().startswith(("x-qwc", "x-t"))}
        return json.dumps(seen, sort_keys=True).encode()

    def _dribble(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            self.wfile.write(b".")
            self.wfile.flush()
            if self.release.wait(0.05):
                return

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    _Handler.release.clear()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Handler.release.set()
        httpd.shutdown()
        httpd.server_close()


def http(url: str, **spec: Any) -> HttpRun:
    made = prepare(job(http={"method": "GET", "url": url, **spec}), IDENTITY)
    assert isinstance(made, HttpRun)
    return made


def test_http_succeeds_on_2xx_with_the_identity_in_headers(server: str) -> None:
    outcome = http(f"{server}/ok", headers={"X-Token": "abc"}).run(max_bytes=4096)
    assert (outcome.status, outcome.http_status, outcome.reason) == ("succeeded", 200, None)
    head, body = outcome.output.split("\n", 1)
    assert head == "HTTP 200 OK"
    assert json.loads(body) == {
        "X-Qwc-Attempt": "2",
        "X-Qwc-Execution-Id": "exec-1",
        "X-Qwc-Fire-Time": "2023-11-14T22:13:20.123+00:00",
        "X-Qwc-Fire-Time-Ms": "1700000000123",
        "X-Qwc-Job-Id": "job-1",
        "X-Qwc-Member-Uuid": MEMBER,
        "X-Token": "abc",
    }


def test_http_post_with_a_body_and_an_expected_status(server: str) -> None:
    spec = {"method": "POST", "url": f"{server}/hook", "body": "payload", "expect_status": 201}
    made = prepare(job(http=spec), IDENTITY)
    assert isinstance(made, HttpRun)
    outcome = made.run(max_bytes=4096)
    assert (outcome.status, outcome.output) == ("succeeded", "HTTP 201 Created\ngot payload")


@pytest.mark.parametrize(
    ("path", "expect", "reason"),
    [
        ("/fail", None, "HTTP 500, expected 2xx"),
        ("/created", 200, "HTTP 201, expected 200"),
        ("/moved", None, "HTTP 301, expected 2xx"),  # redirects are not followed
    ],
)
def test_http_fails_on_another_status(
    server: str, path: str, expect: int | None, reason: str
) -> None:
    outcome = http(f"{server}{path}", expect_status=expect).run(max_bytes=4096)
    assert (outcome.status, outcome.reason) == ("failed", reason)
    assert outcome.output.startswith("HTTP ")


def test_http_keeps_the_head_and_tail_of_a_long_answer(server: str) -> None:
    outcome = http(f"{server}/big").run(max_bytes=1024)
    assert outcome.status == "succeeded"
    assert outcome.output.startswith("HTTP 200 OK\nxxx") and outcome.output.endswith("xxEND")
    assert "bytes of output dropped" in outcome.output


def test_http_without_an_answer_fails(server: str) -> None:
    closed = http("http://127.0.0.1:9/")  # discard port: nothing listens
    outcome = closed.run(max_bytes=1024)
    assert outcome.status == "failed" and outcome.http_status is None
    assert outcome.reason is not None and outcome.reason.startswith("no answer from")


def test_http_timeout_of_the_request_is_a_failure(server: str) -> None:
    outcome = http(f"{server}/slow", timeout=0.3).run(max_bytes=1024)
    assert (outcome.status, outcome.reason) == ("failed", "HTTP timeout: no answer within 0.3 s")


def test_the_jobs_timeout_makes_it_timedout(server: str) -> None:
    outcome = http(f"{server}/slow", timeout=30).run(max_bytes=1024, timeout_s=0.3)
    assert (outcome.status, outcome.reason) == ("timedout", "timed out after 0.3 s")
    dribbled = http(f"{server}/dribble", timeout=30).run(max_bytes=1024, timeout_s=0.3)
    assert dribbled.status == "timedout"  # an answer too slow overall, however lively


def test_a_cancelled_call_stops_at_the_next_chunk(server: str) -> None:
    cancel = threading.Event()
    cancel.set()
    outcome = http(f"{server}/dribble").run(max_bytes=1024, cancel=cancel)
    assert outcome.stopped and outcome.http_status == 200


def test_run_http_is_what_an_http_run_calls(server: str) -> None:
    made = http(f"{server}/ok")
    assert run_http(made.spec, IDENTITY, max_bytes=64).status == "succeeded"
