"""Local-machine helpers of the embedded server: processes, a lock file, small files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from schemas.errors import EmbeddedRedisError

__all__ = [
    "file_lock",
    "is_redis_server_in",
    "pid_alive",
    "quote_config",
    "user_temp_dir",
    "write_atomic",
]

_POLL_S = 0.02


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a running process of ours (zombies count as exited)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's process
        return False
    if not Path("/proc/self").exists():
        return True  # no procfs: kill(0) is all we can know
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def is_redis_server_in(pid: int, home: Path) -> bool:
    """Is ``pid`` a live redis-server whose working directory (its ``dir``) is ``home``?

    Guards against a stale pid file naming a pid the system reused.
    """
    if not pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    try:
        cmdline = (proc / "cmdline").read_bytes()
        cwd = Path(os.readlink(proc / "cwd"))
    except OSError:
        return False
    return b"redis-server" in cmdline and cwd == home


def quote_config(value: str) -> str:
    """Quote a value for redis.conf (double quotes; backslash, quote and controls escaped)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def user_temp_dir(base: Path | None = None) -> Path:
    """``<base>/qwc-<uid>`` (default base: the temp dir, ``$TMPDIR`` first), mode 700;
    EmbeddedRedisError if it exists and is not ours."""
    path = (base or Path(tempfile.gettempdir())) / f"qwc-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise EmbeddedRedisError(f"{path} must be a directory owned by uid {os.getuid()}, mode 700")
    return path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block.

    Raises EmbeddedRedisError when another process holds it for more than ``timeout_s``.
    The lock goes with the file descriptor: a crashed holder releases it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(f"{path}: locked for over {timeout_s:.0f} s") from None
                time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock
