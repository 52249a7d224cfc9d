"""deploy/smoke's command line: the steps in order, and the summary."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

from . import checks, restart, takeover
from .compose import Compose
from .engine import (
    BASE_IMAGES,
    Docker,
    base_images,
    build_project_image,
    mounts_under,
    private_dockerd,
    stop_leftover,
    unmount_under,
)
from .files import Ports, override, override_text, parse_env, pip_conf, smoke_env
from .files import without_published_ports as strip_ports
from .host import SmokeError, ensure_packages, free_port, host_pip_settings, log, log_to, run

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = "/var/lib/qwc-smoke"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PROJECT_IMAGE = "qwcontrol-cluster"
QWC_SERVICE = "manager"  # where `qwc` runs for the checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy/smoke",
        description=(
            "Run the project's image and compose.yaml for real on a private Docker engine "
            "of this host (host networking only), prove what an operator relies on, print "
            "a summary; exit 1 if anything failed. Needs root. docs/operations.md, 'Smoke run'."
        ),
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("QWC_SMOKE_DIR", DEFAULT_DIR)),
        help="the engine's data root, the base-image cache and the last run's logs "
        f"(default: $QWC_SMOKE_DIR, then {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--mirror",
        default=os.environ.get("QWC_SMOKE_DEBIAN_MIRROR", DEFAULT_MIRROR),
        help="Debian mirror for debootstrap "
        f"(default: $QWC_SMOKE_DEBIAN_MIRROR, then {DEFAULT_MIRROR})",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="forget the cached base images and the engine's data first (a cold run)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print(
            "deploy/smoke: run it as root (it installs packages and starts dockerd)",
            file=sys.stderr,
        )
        return 2
    root: Path = args.dir.resolve()
    work = root / "last-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log_to(work / "smoke.log")
    signal.signal(signal.SIGTERM, _exit_on_signal)
    report = checks.Report()
    started = time.monotonic()
    try:
        if args.fresh:
            _forget(root)
        installed = ensure_packages()
        report.figures["packages installed"] = ", ".join(installed) or "none (all present)"
        interfaces = set(os.listdir("/sys/class/net"))
        with private_dockerd(root) as docker:
            try:
                _run(docker, root, work, args.mirror, report)
            finally:
                _check_no_network(docker, report, interfaces)
    except SmokeError as e:
        report.check("run", False, str(e))
    except KeyboardInterrupt:
        report.check("run", False, "interrupted")
    except Exception as e:  # a bug of the smoke itself: still a failure, still summarised
        log(traceback.format_exc())
        report.check("run", False, f"{type(e).__name__}: {e}")
    finally:
        _summary(report, time.monotonic() - started, root, work)
    return 1 if report.failed else 0


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the cleanups: compose down, dockerd stopped


def _forget(root: Path) -> None:
    stop_leftover(root)
    unmount_under(root)
    mounted = mounts_under(root)
    if mounted:
        raise SmokeError(f"--fresh: {mounted[0]} is mounted (a dockerd still running on {root}?)")
    log(f"--fresh: removing {root / 'docker'} and {root / 'cache'}")
    for sub in ("docker", "cache"):
        shutil.rmtree(root / sub, ignore_errors=True)


def _run(docker: Docker, root: Path, work: Path, mirror: str, report: checks.Report) -> None:
    version = docker("version", "--format", "{{.Server.Version}}").strip()
    compose_version = run(["docker-compose", "version", "--short"]).stdout.strip()
    report.figures["engine"] = (
        f"dockerd {version} (private, data root {root / 'docker'}), "
        f"docker-compose {compose_version}"
    )
    made = base_images(docker, root / "cache", REPO / "deploy" / "smoke-images", mirror)
    report.figures["base images"] = "; ".join(f"{k}: {v}" for k, v in made.items())

    env_file = work / "smoke.env"
    env_file.write_text(
        smoke_env((REPO / "deploy" / "env.example").read_text(), lambda: secrets.token_urlsafe(24))
    )
    env_file.chmod(0o600)
    env = parse_env(env_file.read_text())
    tag = f"{PROJECT_IMAGE}:{env.get('QWC_VERSION', 'latest')}"
    conf, cert = _pip_secrets(work)
    built = build_project_image(docker, REPO, tag, conf, cert)
    mb = 1e6
    report.figures["image"] = (
        f"{tag} {built['size_bytes'] / mb:.0f} MB ({built['base_bytes'] / mb:.0f} MB of "
        f"{BASE_IMAGES['python']} + {(built['size_bytes'] - built['base_bytes']) / mb:.0f} MB), "
        f"built in {built['build_s']:.0f} s"
    )

    text = (REPO / "compose.yaml").read_text()
    copy, removed = strip_ports(text)
    (work / "compose.yaml").write_text(copy)
    gone = " ".join(line.strip() for line in removed) or "none"
    log(f"compose.yaml's copy without its published ports: {gone}")
    ports = Ports(redis=free_port(16379), postgres=free_port(15432), manager=free_port(4440))
    images = {"redis": BASE_IMAGES["redis"], "postgres": BASE_IMAGES["postgres"]}
    first = Compose("docker-compose", docker, REPO, (work / "compose.yaml",), env_file)
    doc = override(copy, first.services(), ports, images)
    (work / "compose.override.yaml").write_text(override_text(doc))
    report.figures["ports (127.0.0.1)"] = (
        f"redis {ports.redis}, postgres {ports.postgres}, manager {ports.manager}"
    )
    compose = Compose(
        "docker-compose",
        docker,
        REPO,
        (work / "compose.yaml", work / "compose.override.yaml"),
        env_file,
    )
    compose("down", "-v", "--remove-orphans")  # whatever an interrupted run left
    try:
        _scenario(compose, report, env["QWC_MANAGER_TOKEN"])
    finally:
        compose.save_logs(work / "compose.log")
        compose("down", "-v", "--remove-orphans", check=False)


def _pip_secrets(work: Path) -> tuple[Path | None, Path | None]:
    """pip.conf and CA bundle for the image's build, from this host's pip settings."""
    settings = host_pip_settings()
    cert = Path(settings["cert"]) if settings.get("cert") else None
    if cert is not None and not cert.is_file():
        settings.pop("cert")
        cert = None
    text = pip_conf(settings)
    if text is None:
        return None, None
    conf = work / "pip.conf"
    conf.write_text(text)
    conf.chmod(0o600)
    log(f"pip settings for the build (secrets): {', '.join(sorted(settings))}")
    return conf, cert


def _scenario(compose: Compose, report: checks.Report, token: str) -> None:
    found = checks.start(compose, report, "first up")
    checks.check_manager(report, found, token)
    moved = takeover.takeover(compose, report, QWC_SERVICE)
    before = restart.snapshot(compose, QWC_SERVICE, moved)
    codes = restart.check_stop(compose, report)
    report.figures["exit codes (stop)"] = ", ".join(f"{k} {v}" for k, v in codes.items())
    restart.restart(compose, report, QWC_SERVICE, moved, before)


def _check_no_network(docker: Docker, report: checks.Report, before: set[str]) -> None:
    networks = sorted(docker("network", "ls", "--format", "{{.Name}}").split())
    added = sorted(set(os.listdir("/sys/class/net")) - before)
    report.check(
        "host networking only",
        networks == ["host", "none"] and not added,
        f"engine networks {', '.join(networks)}; interfaces added: {added or 'none'}",
    )


def _summary(report: checks.Report, took_s: float, root: Path, work: Path) -> None:
    verdict = "FAILED" if report.failed else "PASSED"
    lines = [
        "",
        f"== deploy/smoke {verdict}: {len(report.checks) - len(report.failed)} checks passed, "
        f"{len(report.failed)} failed, in {int(took_s // 60)} min {int(took_s % 60)} s ==",
    ]
    width = max((len(k) for k in report.figures), default=0) + 1
    lines += [f"{k + ':':<{width}} {v}" for k, v in report.figures.items()]
    lines += [f"FAILED {name}: {detail}" for name, ok, detail in report.checks if not ok]
    lines.append(f"logs: {work} (smoke.log, compose.log), {root / 'dockerd.log'}")
    lines.append(
        f"smoke: {len(report.checks) - len(report.failed)} passed, {len(report.failed)} failed"
    )
    print("\n".join(lines), flush=True)
