"""Reading ``qwcontrol-config.properties`` and naming the environment variables of its keys.

The file is Java ``.properties`` syntax, parsed by :mod:`javaproperties` (``key=value``,
``key = value``, ``key:value``, ``key value``, ``\\`` continuation lines, ``#``/``!``
comments, ``\\uXXXX`` escapes). A key repeated in a file: the last one wins, as in Java,
and its line is the one recorded. Values are stripped of surrounding whitespace (Java
keeps trailing blanks; nobody means them). The file is read as UTF-8, falling back to
ISO-8859-1 (what Java's ``Properties.load(InputStream)`` reads) when it is not UTF-8.

Only :mod:`schemas.settings` uses this module; it knows nothing of the settings' meaning.
"""

from __future__ import annotations

__all__ = ["PropertyEntry", "closest", "env_name", "read_properties"]

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import javaproperties

from schemas.errors import ConfigError, ConfigProblem

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class PropertyEntry:
    """One ``key=value`` of a properties file; ``line`` is 1-based, where the key starts."""

    key: str
    value: str
    line: int


def read_properties(path: Path) -> dict[str, PropertyEntry]:
    """Every key of the file at ``path`` in file order, the last occurrence of a key winning.

    Raises :class:`ConfigError` when the file cannot be read or holds an invalid ``\\u`` escape.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = ConfigProblem(
            key="config file",
            value=str(path),
            allowed=f"a readable file ({exc.strerror or exc})",
            source=str(path),
        )
        raise ConfigError([problem]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return _parse(text, str(path))


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
        line += len(_LINE_BREAK.findall(element.source))


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
