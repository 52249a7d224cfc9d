"""Bounded input to the settings: the config file is refused, unread, when it is not a
regular file or is over 1 MiB, and when it is not UTF-8 text; durations have a range;
member names are printable and bounded. Each refusal names the file (and line) or key,
and ``qwc config check`` exits 2 with it, never a traceback."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from schemas.errors import ConfigError, ConfigProblem
from schemas.properties import MAX_CONFIG_BYTES
from schemas.settings import Settings, find_config_file, load_settings
from schemas.settings_types import MAX_DURATION_S, MIN_INTERVAL_S
from workers.cli.main import cli

CM = "qwcontrol.clusterMode."
GIB = 1024**3


pytestmark = pytest.mark.usefixtures("isolated_settings")


def the_problem(path: Path | None = None, **kwargs: object) -> ConfigProblem:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={}, **kwargs)  # type: ignore[arg-type]
    (problem,) = caught.value.problems
    return problem


def special(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A config path that is not a regular file, and what the refusal must say of it."""
    path = tmp_path / "qwc.properties"
    if kind == "fifo":
        os.mkfifo(path)  # no writer: opening it to read would block
        return path, f"({path} is a FIFO)"
    if kind == "directory":
        path.mkdir()
        return path, f"({path} is a directory)"
    path.symlink_to("/dev/zero")  # endless: reading it whole grew to 8 GB
    return path, f"({path} -> /dev/zero is a character device)"


# --- the file itself --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink_to_dev_zero"])
def test_a_file_that_is_not_regular_is_refused_unread(tmp_path: Path, kind: str) -> None:
    path, said = special(tmp_path, kind)
    problem = the_problem(path)
    assert (problem.key, problem.value, problem.source) == ("config file", str(path), str(path))
    assert problem.allowed == f"a regular file {said}"


def test_a_default_file_that_is_not_regular_is_refused_not_skipped(tmp_path: Path) -> None:
    os.mkfifo("qwcontrol-config.properties")
    assert find_config_file(environ={}) == Path("qwcontrol-config.properties")
    assert "is a FIFO" in the_problem().allowed


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    target = tmp_path / "real.properties"
    target.write_text(f"{CM}heartbeat.interval=12\n", encoding="utf-8")
    (tmp_path / "link.properties").symlink_to(target)
    assert load_settings(tmp_path / "link.properties", environ={}).heartbeat_interval_s == 12


def test_dev_null_names_no_file(tmp_path: Path) -> None:
    (tmp_path / "qwcontrol-config.properties").write_text(f"{CM}heartbeat.interval=12\n")
    assert find_config_file(os.devnull, environ={}) is None
    assert find_config_file(environ={"QWC_CONFIG": os.devnull}) is None
    assert load_settings(os.devnull, environ={}).heartbeat_interval_s == 30  # the default


def test_a_file_over_1_mib_is_refused_by_its_size_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.properties"
    with path.open("wb") as file:
        file.truncate(8 * GIB)  # sparse: reading it whole would take 8 GiB of memory
    problem = the_problem(path)
    assert (problem.key, problem.source) == ("config file", str(path))
    assert problem.allowed == f"a file of at most 1048576 bytes (1 MiB), not {8 * GIB} bytes"


def test_1_mib_is_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "full.properties"
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES - 1) + b"\n")
    assert load_settings(path, environ={}).heartbeat_interval_s == 30
    path.write_bytes(b"#" * MAX_CONFIG_BYTES + b"\n")
    assert "not 1048577 bytes" in the_problem(path).allowed


def test_a_file_that_grows_past_its_checked_size_is_read_no_further(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.properties"
    path.write_bytes(b"#" * (3 * MAX_CONFIG_BYTES))
    real_fstat = os.fstat

    def small_when_checked(fd: int) -> os.stat_result:
        info = list(real_fstat(fd))
        info[6] = 10  # st_size: what it was when checked, before it grew
        return os.stat_result(info)

    monkeypatch.setattr("schemas.properties.os.fstat", small_when_checked)
    assert "not more (growing)" in the_problem(path).allowed


@pytest.mark.parametrize(
    ("content", "line", "said"),
    [
        (b"a=1\nb=2\nqwcontrol.server.name=caf\xe9\n", 3, "byte 0xe9 is not UTF-8"),  # latin-1
        (b"a=1\r\n\xff\xfeq\x00w\x00", 2, "byte 0xff is not UTF-8"),  # UTF-16
        (b"a=1\nb=\x00\x01\x02\n", 2, "a NUL byte"),
    ],
    ids=["latin-1", "utf-16", "nul"],
)
def test_text_that_is_not_utf8_is_refused_naming_the_line(
    tmp_path: Path, content: bytes, line: int, said: str
) -> None:
    path = tmp_path / "bad.properties"
    path.write_bytes(content)
    problem = the_problem(path)
    assert (problem.key, problem.source, problem.line) == ("config file", str(path), line)
    assert said in problem.allowed


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "random.properties"
    path.write_bytes(random.Random(12).randbytes(4096))
    problem = the_problem(path)
    assert problem.key == "config file" and problem.line is not None
    assert problem.allowed.startswith("UTF-8 text (byte 0x")


def test_utf8_with_a_byte_order_mark_and_escapes_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.properties"
    text = f"{CM}heartbeat.interval=12\nqwcontrol.server.name=caf\\u00e9 \u00fcber\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    settings = load_settings(path, environ={})
    assert (settings.heartbeat_interval_s, settings.server_name) == (12, "caf\u00e9 \u00fcber")


# --- qwc config check -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "symlink_to_dev_zero", "random", "over_1_mib"])
def test_config_check_exits_2_naming_the_file(tmp_path: Path, kind: str) -> None:
    if kind in ("fifo", "symlink_to_dev_zero"):
        path, said = special(tmp_path, kind)
    else:
        path = tmp_path / "qwc.properties"
        size = MAX_CONFIG_BYTES + 1 if kind == "over_1_mib" else 4096
        path.write_bytes(random.Random(3).randbytes(size))
        said = "not 1048577 bytes" if kind == "over_1_mib" else "UTF-8 text (byte 0x"
    result = CliRunner().invoke(cli, ["--config", str(path), "config", "check"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}") and f": config file = '{path}': " in first
    assert said in first
    assert "Traceback" not in result.output


# --- durations --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e-9, 0.009, MAX_DURATION_S + 1, float("nan"), float("inf")])
def test_intervals_outside_their_range_are_refused(value: float) -> None:
    with pytest.raises(ValidationError, match="remote_exec_process_interval_s"):
        Settings(remote_exec_process_interval_s=value)
    problem = the_problem(overrides={"autotakeover_sleep_s": value})
    assert problem.key == CM + "autotakeover.sleep"
    assert problem.allowed == "a number of seconds from 0.01 to 604800 (7 days)"


def test_the_ends_of_the_ranges_are_allowed() -> None:
    low = Settings(
        heartbeat_interval_s=MIN_INTERVAL_S,
        heartbeat_consider_inactive_s=0.02,
        heartbeat_consider_dead_s=0.03,
        heartbeat_delay_s=0,
        autotakeover_sleep_s=MIN_INTERVAL_S,
        recover_delay_s=0,
    )
    assert (low.heartbeat_interval_s, low.recover_delay_s) == (0.01, 0)
    high = Settings(heartbeat_consider_dead_s=MAX_DURATION_S, recover_delay_s=MAX_DURATION_S)
    assert high.heartbeat_consider_dead_s == high.recover_delay_s == 604800


def test_a_duration_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"QWC_CLUSTERMODE_HEARTBEAT_INTERVAL": "1e-9"})
    (problem,) = caught.value.problems
    assert str(problem) == (
        "environment (QWC_CLUSTERMODE_HEARTBEAT_INTERVAL): "
        f"{CM}heartbeat.interval = '1e-9': a number of seconds from 0.01 to 604800 (7 days)"
    )


# --- member names -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web 1", "caf\u00e9-\u00fcber", "n" * 200])
def test_printable_names_up_to_200_characters_are_allowed(name: str) -> None:
    assert Settings(server_name=name).server_name == name


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("web\n1", "'\\n' is not printable"),
        ("web\t1", "'\\t' is not printable"),
        ("web\x1b[31m", "'\\x1b' is not printable"),
        ("n" * 201, "it has 201 characters"),
    ],
)
def test_other_names_are_refused_saying_what_is_allowed(name: str, said: str) -> None:
    problem = the_problem(overrides={"server_name": name})
    assert problem.key == "qwcontrol.server.name"
    assert problem.allowed.startswith("at most 200 printable characters (letters, digits")
    assert problem.allowed.endswith(f"({said})")


def test_qwc_node_refuses_such_a_name_with_exit_2(tmp_path: Path) -> None:
    env = {"QWC_REDIS_URL": "redis://127.0.0.1:1/0", "QWC_HOME": str(tmp_path / "home")}
    args = ["node", "--uuid", "0e5f6c3a-8d1b-4c2e-9f70-1a2b3c4d5e6f", "--name", "web\n1"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert "qwcontrol.server.name = 'web\\n1': at most 200 printable characters" in result.stderr
    assert "Traceback" not in result.output
