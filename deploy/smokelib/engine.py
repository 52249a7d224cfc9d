"""The private Docker engine of deploy/smoke and the images it runs.

The engine is a ``dockerd`` of its own: data root, exec root, socket and pid file under the
smoke's directory, no bridge, no iptables rules, no masquerading; containers use the host's
network. It is stopped when the run ends, whatever happened. The images: a Debian bookworm
root filesystem made by debootstrap (kept as a tarball in the cache) and imported; on it
Python, Redis and PostgreSQL images from Debian's packages (deploy/smoke-images/); and the
project's image from the real Dockerfile on that Python image.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .host import SmokeError, log, run

__all__ = [
    "BASE_IMAGES",
    "Docker",
    "base_images",
    "build_project_image",
    "mounts_under",
    "private_dockerd",
    "stop_leftover",
    "unmount_under",
]

DEBIAN_IMAGE = "qwc-smoke/debian:bookworm"
#: deploy/smoke-images/<dir> -> the tag built from it on DEBIAN_IMAGE.
BASE_IMAGES = {
    "python": "qwc-smoke/python:3.11-bookworm",
    "redis": "qwc-smoke/redis:7.0-bookworm",
    "postgres": "qwc-smoke/postgres:15-bookworm",
}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Docker:
    """The docker CLI pointed at the private engine. ``cli`` is docker.io's own client when
    present (its ``docker build`` is BuildKit without a buildx plugin)."""

    cli: str
    host: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1"}

    def __call__(
        self, *args: str, check: bool = True, timeout_s: float = 1800, logged: bool = True
    ) -> str:
        done = run([self.cli, *args], env=self.env, check=check, timeout_s=timeout_s, logged=logged)
        return done.stdout

    def answers(self) -> bool:
        done = run(
            [self.cli, "version", "--format", "{{.Server.Version}}"],
            env=self.env,
            check=False,
            timeout_s=10,
        )
        return done.returncode == 0

    def has_image(self, tag: str) -> bool:
        return bool(self("images", "-q", tag).strip())

    def image_size_bytes(self, tag: str) -> int:
        return int(self("image", "inspect", "-f", "{{.Size}}", tag).strip())


def docker_cli() -> str:
    """$QWC_SMOKE_DOCKER, else docker.io's /usr/bin/docker, else the first docker on PATH."""
    chosen = os.environ.get("QWC_SMOKE_DOCKER")
    if chosen:
        return chosen
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        raise SmokeError("no docker command (install docker.io)")
    return found


@contextlib.contextmanager
def private_dockerd(root: Path) -> Iterator[Docker]:
    """Start ``dockerd`` on ``root`` (data in root/docker, socket root/docker.sock, log
    root/dockerd.log), yield its client once it answers, stop it on the way out (SIGTERM,
    SIGKILL after STOP_TIMEOUT_S). A dockerd left running on the same root by an earlier
    run that was itself killed is stopped first."""
    run_dir = root / "run"
    pidfile = run_dir / "dockerd.pid"
    run_dir.mkdir(parents=True, exist_ok=True)
    stop_leftover(root)
    config = root / "daemon.json"
    config.write_text("{}\n")  # not the host's /etc/docker/daemon.json
    sock = root / "docker.sock"
    argv = [
        shutil.which("dockerd", path="/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin")
        or "dockerd",
        "--config-file",
        str(config),
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        "--data-root",
        str(root / "docker"),
        "--exec-root",
        str(run_dir),
        "--pidfile",
        str(pidfile),
        "--host",
        f"unix://{sock}",
    ]
    log(f"starting a private dockerd on {root}")
    with (root / "dockerd.log").open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    docker = Docker(docker_cli(), f"unix://{sock}")
    try:
        _wait_ready(docker, proc, root)
        yield docker
    finally:
        log("stopping the private dockerd")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        unmount_under(root)


def mounts_under(root: Path) -> list[str]:
    """Mount points below ``root``, deepest last (from /proc/mounts)."""
    prefix = str(root) + "/"
    lines = Path("/proc/mounts").read_text().splitlines()
    return [p for p in (line.split()[1] for line in lines) if p.startswith(prefix)]


def unmount_under(root: Path) -> None:
    """Unmount what the engine leaves below ``root`` once stopped (libnetwork's handle on
    the host's network namespace, run/netns/default; a killed engine's container layers)."""
    for point in reversed(mounts_under(root)):
        run(["umount", point], check=False)


def _wait_ready(docker: Docker, proc: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmokeError(f"dockerd exited {proc.returncode}: see {root / 'dockerd.log'}")
        if docker.answers():
            return
        time.sleep(0.5)
    raise SmokeError(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s")


def stop_leftover(root: Path) -> None:
    """Stop a dockerd that an earlier run, itself killed, left running on ``root``."""
    pidfile = root / "run" / "dockerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        pidfile.unlink(missing_ok=True)
        return
    if cmdline and cmdline[0].endswith(b"dockerd") and str(root / "docker").encode() in cmdline:
        log(f"stopping dockerd {pid} left on {root} by an earlier run")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    pidfile.unlink(missing_ok=True)


def base_images(docker: Docker, cache: Path, images_dir: Path, mirror: str) -> dict[str, str]:
    """Make the local base images; returns what was done for the summary. The Debian
    image is imported from the cached root filesystem tarball (made by debootstrap when
    missing); the others are built from deploy/smoke-images/ (BuildKit's cache makes that
    a no-op when nothing changed)."""
    done: dict[str, str] = {}
    if docker.has_image(DEBIAN_IMAGE):
        done["debian"] = "in the engine"
    else:
        tarball = cache / "debian-bookworm-rootfs.tar"
        started = time.monotonic()
        if tarball.exists():
            done["debian"] = "imported from the cached rootfs"
        else:
            _debootstrap(tarball, mirror)
            done["debian"] = "debootstrap"
        log(f"importing {tarball} as {DEBIAN_IMAGE}")
        docker("import", "--change", 'CMD ["bash"]', str(tarball), DEBIAN_IMAGE)
        done["debian"] += f" ({time.monotonic() - started:.0f} s)"
    for name, tag in BASE_IMAGES.items():
        started = time.monotonic()
        existed = docker.has_image(tag)
        docker(
            "build",
            "--network",
            "host",
            "--build-arg",
            f"DEBIAN_IMAGE={DEBIAN_IMAGE}",
            "-t",
            tag,
            str(images_dir / name),
        )
        state = "cached" if existed else "built"
        done[name] = f"{state} ({time.monotonic() - started:.0f} s)"
    return done


def _debootstrap(tarball: Path, mirror: str) -> None:
    """Debian bookworm (minbase) from ``mirror`` into ``tarball``, apt's caches emptied."""
    work = tarball.with_suffix(".d")
    shutil.rmtree(work, ignore_errors=True)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap bookworm from {mirror} (a few minutes, once)")
    run(["debootstrap", "--variant=minbase", "bookworm", str(work), mirror], timeout_s=3600)
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (work / sub).glob("*"):
            if entry.is_file():
                entry.unlink()
    partial = tarball.with_suffix(".tar.part")
    run(["tar", "-C", str(work), "--numeric-owner", "-cf", str(partial), "."])
    partial.rename(tarball)
    shutil.rmtree(work)


def build_project_image(
    docker: Docker, repo: Path, tag: str, pip_conf: Path | None, pip_cert: Path | None
) -> dict[str, float]:
    """``docker build`` of the repository's Dockerfile as ``tag`` on the local Python image,
    pip's settings passed as build secrets. Returns the build time and the sizes."""
    secrets: list[str] = []
    if pip_conf is not None:
        secrets += ["--secret", f"id=pip.conf,src={pip_conf}"]
    if pip_cert is not None:
        secrets += ["--secret", f"id=pip-cert,src={pip_cert}"]
    log(f"building {tag} from {repo / 'Dockerfile'}")
    started = time.monotonic()
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGES['python']}",
        *secrets,
        "-t",
        tag,
        str(repo),
    )
    built_s = time.monotonic() - started
    docker("image", "prune", "-f")  # the previous build of this tag, now untagged
    config = json.loads(docker("image", "inspect", tag))[0]
    return {
        "build_s": built_s,
        "size_bytes": float(config["Size"]),
        "base_bytes": float(docker.image_size_bytes(BASE_IMAGES["python"])),
    }
