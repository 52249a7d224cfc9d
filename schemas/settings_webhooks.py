"""The notification settings' own types: webhook receivers, the signing secret, the timeout.

A receiver is two keys of the config file, under a name of its own::

    qwcontrol.notifications.webhooks.ops.url = https://hooks.example.com/qwc
    qwcontrol.notifications.webhooks.ops.events = member.*,takeover.committed

or the environment variables ``QWC_NOTIFICATIONS_WEBHOOKS_OPS_URL`` and ``…_OPS_EVENTS``
(the environment wins per key). A name is 1 to 40 lower-case letters, digits and ``_``;
``url`` is an ``http://`` or ``https://`` URL with a host; ``events`` is a non-empty
comma-separated list of patterns (:func:`schemas.events.check_pattern`). The loader
(:mod:`schemas.settings_loader`) collects the keys with :func:`parse_file_key` and
:func:`parse_env_name`, and :func:`combine` turns them into :class:`Webhook` objects,
reporting each bad key with its own file and line.

A receiver's URL may hold a secret (many services put a token in the path), so it is
shown only as :func:`redact_webhook_url` gives it: scheme, host and port.
"""

from __future__ import annotations

__all__ = [
    "ENV_PREFIX",
    "HTTP_TIMEOUT_RANGE_S",
    "KEY_PREFIX",
    "MAX_RECEIVERS",
    "URL_ALLOWED",
    "HttpTimeoutSeconds",
    "NotifySecret",
    "Webhook",
    "WebhookList",
    "WebhookPart",
    "WebhookParts",
    "check_url",
    "combine",
    "parse_env_name",
    "parse_file_key",
    "redact_webhook_url",
]

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    field_validator,
)

from schemas.errors import ConfigProblem
from schemas.events import check_pattern
from schemas.settings_rules import Origin
from schemas.settings_types import Allowed, ValueDetail

KEY_PREFIX = "qwcontrol.notifications.webhooks."
ENV_PREFIX = "QWC_NOTIFICATIONS_WEBHOOKS_"
MAX_RECEIVERS = 32  # each receiver is one delivery thread per notify worker
HTTP_TIMEOUT_RANGE_S = (0.01, 300.0)
SECRET_MIN_CHARS = 16
_ATTRS = ("url", "events")
_NAME = re.compile(r"[a-z0-9_]{1,40}")
NAME_ALLOWED = "a receiver name of 1 to 40 lower-case letters, digits and _"
URL_ALLOWED = "an http:// or https:// URL with a host"
EVENTS_ALLOWED = (
    "a comma-separated list of event types or patterns: *, member.*, takeover.*, "
    "recovery.*, execution.*, or types such as member.dead, takeover.committed"
)


def redact_webhook_url(url: str) -> str:
    """``https://hooks.example.com:8443/…``: scheme, host and port; no user, path or query
    (they may hold a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    host = f"[{host}]" if ":" in host else host
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


def check_url(url: str) -> str:
    """``url`` stripped, when it is an http(s) URL with a host; else ``ValueDetail`` why not."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        _ = parts.port  # ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueDetail(str(exc)) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueDetail(f"scheme {parts.scheme or '(none)'!r}")
    if not parts.hostname:
        raise ValueDetail("no host")
    if any(c.isspace() for c in text):
        raise ValueDetail("white space in the URL")
    return text


def _check_events(value: Any) -> Any:
    if isinstance(value, str):
        value = [item for item in value.split(",") if item.strip()]
    if not value:
        raise ValueDetail("empty: name the events the receiver wants (* for all)")
    checked = []
    for item in value:
        try:
            checked.append(check_pattern(str(item)))
        except ValueError as exc:
            raise ValueDetail(str(exc)) from None
    return tuple(dict.fromkeys(checked))


class Webhook(BaseModel):
    """One webhook receiver: its ``name``, ``url`` and the event ``events`` patterns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    url: str
    events: tuple[str, ...]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueDetail(f"`{value}` is not {NAME_ALLOWED}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        return _check_events(value)

    def __str__(self) -> str:
        return f"{self.name}={redact_webhook_url(self.url)} [{' '.join(self.events)}]"

    def shown(self) -> dict[str, Any]:
        """What may be shown of the receiver (JSON): its URL redacted."""
        return {"name": self.name, "url": redact_webhook_url(self.url), "events": list(self.events)}


def _unique_names(value: tuple[Webhook, ...]) -> tuple[Webhook, ...]:
    names = [w.name for w in value]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueDetail(f"receiver {twice[0]} given twice")
    if len(value) > MAX_RECEIVERS:
        raise ValueDetail(f"{len(value)} receivers, at most {MAX_RECEIVERS}")
    return tuple(sorted(value, key=lambda w: w.name))


WebhookList = Annotated[
    tuple[Webhook, ...],
    AfterValidator(_unique_names),
    Allowed(
        f"receivers given as {KEY_PREFIX}<name>.url and .events "
        f"(env {ENV_PREFIX}<NAME>_URL and _EVENTS), at most {MAX_RECEIVERS}"
    ),
]


def _secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value()) < SECRET_MIN_CHARS:
        raise ValueDetail(f"{len(value.get_secret_value())} characters")
    return value


NotifySecret = Annotated[
    SecretStr | None,
    BeforeValidator(lambda v: (v.strip() or None) if isinstance(v, str) else v),
    AfterValidator(_secret),
    Allowed(f"a secret of at least {SECRET_MIN_CHARS} characters (random; never shown)"),
]
HttpTimeoutSeconds = Annotated[
    float,
    BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
    Ge(HTTP_TIMEOUT_RANGE_S[0]),
    Le(HTTP_TIMEOUT_RANGE_S[1]),
    AllowInfNan(False),
    Allowed(f"a number of seconds from {HTTP_TIMEOUT_RANGE_S[0]:g} to {HTTP_TIMEOUT_RANGE_S[1]:g}"),
]


@dataclass(frozen=True)
class WebhookPart:
    """One key of one receiver as given: ``attr`` is ``url`` or ``events``."""

    name: str
    attr: str
    text: str
    origin: Origin


WebhookParts = dict[tuple[str, str], WebhookPart]


def parse_file_key(key: str, value: str, origin: Origin) -> WebhookPart | ConfigProblem | None:
    """The part a file key under :data:`KEY_PREFIX` gives (None: not such a key), or the
    problem with it (a bad name, an attribute other than url/events)."""
    if not key.lower().startswith(KEY_PREFIX.lower()):
        return None
    name, dot, attr = key[len(KEY_PREFIX) :].rpartition(".")
    if not dot or attr not in _ATTRS:
        hint = f"did you mean `{KEY_PREFIX}{name or '<name>'}.{_closest_attr(attr)}`?"
        allowed = f"{KEY_PREFIX}<name>.url or .events: {hint}"
        return ConfigProblem(key, value, allowed, origin.where, origin.line)
    if not key.startswith(KEY_PREFIX) or not _NAME.fullmatch(name):
        return ConfigProblem(key, value, NAME_ALLOWED, origin.where, origin.line)
    return WebhookPart(name, attr, value, origin)


def parse_env_name(name: str, value: str) -> WebhookPart | ConfigProblem | None:
    """The part an environment variable ``QWC_NOTIFICATIONS_WEBHOOKS_<NAME>_URL|_EVENTS``
    gives (the receiver's name lower-cased; None: not such a variable), or its problem."""
    if not name.startswith(ENV_PREFIX):
        return None
    rest = name[len(ENV_PREFIX) :]
    for attr in _ATTRS:
        receiver, suffix = rest[: -len(attr) - 1], rest[-len(attr) - 1 :]
        if suffix == f"_{attr.upper()}" and _NAME.fullmatch(receiver.lower()):
            key = f"{KEY_PREFIX}{receiver.lower()}.{attr}"
            return WebhookPart(receiver.lower(), attr, value, Origin("environment", key, env=name))
    allowed = f"{ENV_PREFIX}<NAME>_URL or {ENV_PREFIX}<NAME>_EVENTS ({NAME_ALLOWED})"
    return ConfigProblem(name, value, allowed, f"environment ({name})")


def _closest_attr(attr: str) -> str:
    lowered = attr.lower()
    return "events" if lowered.startswith("e") or "event" in lowered else "url"


def combine(
    layers: Sequence[Mapping[tuple[str, str], WebhookPart]], problems: list[ConfigProblem]
) -> tuple[tuple[Webhook, ...], Origin] | None:
    """The receivers of the parts of ``layers`` (lowest precedence first; a higher layer's
    part replaces a lower one's), and the origin to show for them; None when no layer has
    any. A bad part is reported in ``problems`` (with its file and line) and its receiver
    left out."""
    parts: WebhookParts = {}
    for layer in layers:
        parts.update(layer)
    if not parts:
        return None
    receivers = []
    for name in sorted({n for n, _ in parts}):
        receiver = _receiver(name, parts, problems)
        if receiver is not None:
            receivers.append(receiver)
    shown = min(
        (p.origin for p in parts.values()), key=lambda o: (o.source != "environment", o.line or 0)
    )
    origin = Origin(shown.source, KEY_PREFIX.rstrip("."), shown.file, shown.line, shown.env)
    return tuple(receivers), origin


def _receiver(name: str, parts: WebhookParts, problems: list[ConfigProblem]) -> Webhook | None:
    """The receiver ``name``, or None after reporting every problem of its parts."""
    checks = (("url", check_url, URL_ALLOWED), ("events", _check_events, EVENTS_ALLOWED))
    given = {attr: parts[(name, attr)] for attr, _, _ in checks if (name, attr) in parts}
    before = len(problems)
    for attr, check, allowed in checks:
        part = given.get(attr)
        if part is None:
            other = next(iter(given.values()))
            problems.append(_problem(other, f"a receiver needs {KEY_PREFIX}{name}.{attr} as well"))
            continue
        try:
            check(part.text)
        except ValueDetail as exc:
            problems.append(_problem(part, f"{allowed} ({exc})"))
    if len(problems) > before:
        return None
    return Webhook(name=name, url=given["url"].text, events=given["events"].text)  # type: ignore[arg-type]


def _problem(part: WebhookPart, allowed: str) -> ConfigProblem:
    shown = redact_webhook_url(part.text) if part.attr == "url" else part.text
    return ConfigProblem(part.origin.key, shown, allowed, part.origin.where, part.origin.line)
