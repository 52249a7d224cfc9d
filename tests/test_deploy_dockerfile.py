"""The Dockerfile's structure, checked without a Docker engine: the runtime stage runs as a
non-root user, has a HEALTHCHECK that is a real ``qwc`` command, has ``qwc`` as its
entrypoint, and the build stage copies every package the project installs."""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.deploy_checks import resolve_qwc

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages(text: str) -> list[list[Instruction]]:
    """The instructions of each stage (from one FROM to the next)."""
    result: list[list[Instruction]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def runtime_stage(text: str) -> list[Instruction]:
    return stages(text)[-1]


def last(stage: list[Instruction], word: str) -> str | None:
    found = [args for w, args in stage if w == word]
    return found[-1] if found else None


def test_the_runtime_stage_runs_as_a_non_root_user() -> None:
    user = last(runtime_stage(DOCKERFILE.read_text()), "USER")
    assert user is not None
    name = user.split(":")[0]
    assert name != "root" and not (name.isdigit() and int(name) == 0)


def test_a_root_runtime_stage_is_caught() -> None:
    text = DOCKERFILE.read_text() + "\nUSER root\n"
    assert last(runtime_stage(text), "USER") == "root"


def test_the_healthcheck_is_a_real_qwc_command() -> None:
    check = last(runtime_stage(DOCKERFILE.read_text()), "HEALTHCHECK")
    assert check is not None
    options, _, command = check.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)  # the exec form: no shell needed in the image
    assert argv[0] == "qwc"
    assert resolve_qwc(argv[1:]) == ["qwc", "health"]


def test_the_entrypoint_is_qwc() -> None:
    stage = runtime_stage(DOCKERFILE.read_text())
    assert json.loads(last(stage, "ENTRYPOINT") or "null") == ["qwc"]
    assert json.loads(last(stage, "CMD") or "null") == ["--help"]
    env = " ".join(args for word, args in stage if word == "ENV")
    assert "PATH=/opt/qwc/bin:" in env  # where the build stage's venv puts qwc
    assert "QWC_HOME=" in env  # a data directory the user owns


def test_the_build_stage_copies_every_installed_package_and_the_dockerignore_keeps_them() -> None:
    build = stages(DOCKERFILE.read_text())[0]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    needed = {"pyproject.toml", pyproject["project"]["readme"], *packages}
    sources = {s for word, args in build if word == "COPY" for s in args.split()[:-1]}
    assert needed <= sources
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch(source, pattern) for pattern in ignored), source
    for heavy in (".venv", ".git", ".qwc", "tests"):
        assert heavy in ignored


@pytest.mark.parametrize("word", ["FROM", "COPY", "RUN"])
def test_the_parser_sees_both_stages(word: str) -> None:
    build, runtime = stages(DOCKERFILE.read_text())
    assert any(w == word for w, _ in build)
    if word != "RUN":
        assert any(w == word for w, _ in runtime)
