"""Reading ``qwcontrol-config.properties`` and naming the environment variables of its keys.

The file is Java ``.properties`` syntax, parsed by :mod:`javaproperties` (``key=value``,
``key = value``, ``key:value``, ``key value``, ``\\`` continuation lines, ``#``/``!``
comments, ``\\uXXXX`` escapes). A key repeated in a file: the last one wins, as in Java,
and its line is the one recorded. Values are stripped of surrounding whitespace (Java
keeps trailing blanks; nobody means them).

The file is bounded before it is read: it must be a regular file (a symlink is followed;
a directory, FIFO, socket or device such as ``/dev/zero`` is refused without reading it)
of at most :data:`MAX_CONFIG_BYTES`, checked on the open file and again while reading,
which never takes more than that + 1 bytes (a file still growing cannot fill memory).
Its text must be UTF-8 (a leading byte order mark is skipped) without NUL bytes. Java's
``Properties.load(InputStream)`` reads ISO-8859-1 instead; this service does not guess:
a file that is not UTF-8 is refused, naming its line, and characters outside ASCII are
written as UTF-8 or as ``\\uXXXX`` escapes (which both readers understand).

Only :mod:`schemas.settings` uses this module; it knows nothing of the settings' meaning.
"""

from __future__ import annotations

__all__ = ["MAX_CONFIG_BYTES", "PropertyEntry", "closest", "env_name", "read_properties"]

import codecs
import difflib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import javaproperties

from schemas.errors import ConfigError, ConfigProblem

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_CONFIG_BYTES = 1024 * 1024
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


@dataclass(frozen=True)
class PropertyEntry:
    """One ``key=value`` of a properties file; ``line`` is 1-based, where the key starts."""

    key: str
    value: str
    line: int


def read_properties(path: Path) -> dict[str, PropertyEntry]:
    """Every key of the file at ``path`` in file order, the last occurrence of a key winning.

    Raises :class:`ConfigError` naming the file when it cannot be opened, is not a regular
    file, is larger than :data:`MAX_CONFIG_BYTES`, is not UTF-8 text or holds a NUL byte
    (those two with the line), or holds an invalid ``\\u`` escape.
    """
    return _parse(_decode(_read_bounded(path), path), str(path))


def _file_problem(path: Path, allowed: str, line: int | None = None) -> ConfigError:
    problem = ConfigProblem("config file", str(path), allowed, str(path), line)
    return ConfigError([problem])


def _read_bounded(path: Path) -> bytes:
    """At most MAX_CONFIG_BYTES of the regular file at ``path``; opened without blocking
    (a FIFO without a writer would block ``open``) and checked on the open descriptor, so
    what is checked is what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _not_regular(path, info.st_mode)
            data = b""
            if info.st_size <= MAX_CONFIG_BYTES:
                with open(fd, "rb", closefd=False) as file:
                    data = file.read(MAX_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _file_problem(path, f"a readable file ({exc.strerror or exc})") from None
    if info.st_size > MAX_CONFIG_BYTES or len(data) > MAX_CONFIG_BYTES:
        size = f"{info.st_size} bytes" if info.st_size > MAX_CONFIG_BYTES else "more (growing)"
        raise _file_problem(path, f"a file of at most {MAX_CONFIG_BYTES} bytes (1 MiB), not {size}")
    return data


def _not_regular(path: Path, mode: int) -> ConfigError:
    kind = next((name for test, name in _KINDS if test(mode)), "special")
    real = os.path.realpath(path)
    shown = str(path) if real == os.path.abspath(path) else f"{path} -> {real}"
    return _file_problem(path, f"a regular file ({shown} is {kind})")


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text without NUL bytes (a leading byte order mark dropped)."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        allowed = (
            f"UTF-8 text (byte 0x{data[exc.start]:02x} is not UTF-8: save the file as "
            "UTF-8, or write characters outside ASCII as \\uXXXX)"
        )
        raise _file_problem(path, allowed, _line_at(data[: exc.start].decode())) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise _file_problem(path, "text, not binary data (a NUL byte)", _line_at(text[:nul]))
    return text


def _line_at(before: str) -> int:
    """The 1-based line a character is on, given the text ``before`` it."""
    return len(_LINE_BREAK.findall(before)) + 1


def _parse(text: str, source: str) -> dict[str, PropertyEntry]:
    entries: dict[str, PropertyEntry] = {}
    line = 1
    elements = javaproperties.parse(text)
    while True:
        try:
            element = next(elements)
        except StopIteration:
            return entries
        except ValueError as exc:  # javaproperties.InvalidUEscapeError
            problem = ConfigProblem(
                key="(properties syntax)",
                value=None,
                allowed=f"valid .properties syntax ({exc})",
                source=source,
                line=line,
            )
            raise ConfigError([problem]) from None
        if isinstance(element, javaproperties.KeyValue):
            entries.pop(element.key, None)  # re-insert: a repeated key moves to its last place
            entries[element.key] = PropertyEntry(element.key, element.value.strip(), line)
        line += _line_at(element.source) - 1


def env_name(key: str) -> str:
    """The environment variable of a ``qwcontrol.`` key.

    ``qwcontrol.clusterMode.heartbeat.interval`` -> ``QWC_CLUSTERMODE_HEARTBEAT_INTERVAL``:
    ``QWC_`` + the part after ``qwcontrol.``, upper-cased, dots replaced by ``_``.
    """
    rest = key.removeprefix("qwcontrol.")
    return "QWC_" + rest.upper().replace(".", "_")


def closest(name: str, candidates: Iterable[str], *, prefix: str = "") -> str | None:
    """The candidate most like ``name`` (ignoring case and a shared ``prefix``), or None."""
    by_tail = {c[len(prefix) :].lower(): c for c in candidates if c.startswith(prefix)}
    tail = name[len(prefix) :].lower() if name.lower().startswith(prefix.lower()) else name.lower()
    found = difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.5)
    return by_tail[found[0]] if found else None
