"""A job's own webhooks (pure): the URLs its execution events are POSTed to, per trigger.

As Rundeck's ``notification.onstart|onsuccess|onfailure|onretryablefailure``, plus
``ontimeout``. Each trigger is the event of one outcome (:data:`schemas.events.EVENT_TRIGGERS`):

======================  ===========================================================
trigger                 event
======================  ===========================================================
``onstart``             ``execution.started``
``onsuccess``           ``execution.succeeded``
``onfailure``           ``execution.failed`` (no retry follows)
``onretryablefailure``  ``execution.retryable_failure`` (failed; a retry follows)
``ontimeout``           ``execution.timed_out`` (whether a retry follows or not)
======================  ===========================================================

A job keeps them as :class:`JobHooks` (a spec's ``notify``; the store's ``notify``
column: trigger -> list of URLs, triggers without URLs left out). Each URL is an
``http://`` or ``https://`` URL with a host, as a receiver's (a bad one is refused,
naming the trigger); at most :data:`MAX_HOOK_URLS` per trigger, each at most
:data:`MAX_URL_CHARS` long. A URL may hold a token,
so listings show it redacted (:func:`shown_hooks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from schemas.events import trigger_of
from schemas.settings_webhooks import check_url, redact_webhook_url

__all__ = [
    "HOOK_TRIGGERS",
    "MAX_HOOK_URLS",
    "MAX_URL_CHARS",
    "JobHooks",
    "hook_urls",
    "merged_hooks",
    "shown_hooks",
]

HOOK_TRIGGERS = ("onstart", "onsuccess", "onfailure", "onretryablefailure", "ontimeout")
MAX_HOOK_URLS = 10  # per trigger
MAX_URL_CHARS = 2048


class JobHooks(BaseModel):
    """A job's webhooks: per trigger, the URLs (a single URL may be given as a text;
    ``null`` is none). Duplicates are dropped, the order kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    onstart: tuple[str, ...] = ()
    onsuccess: tuple[str, ...] = ()
    onfailure: tuple[str, ...] = ()
    onretryablefailure: tuple[str, ...] = ()
    ontimeout: tuple[str, ...] = ()

    @field_validator(*HOOK_TRIGGERS, mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if value is None:
            return ()
        urls = [value] if isinstance(value, str) else value
        if not isinstance(urls, list | tuple):
            return value  # pydantic says what it expected
        checked = []
        for url in urls:
            if not isinstance(url, str):
                raise ValueError(f"{url!r} is not a URL")
            if not url.strip():
                continue
            if len(url) > MAX_URL_CHARS:
                raise ValueError(f"a URL of {len(url)} characters, at most {MAX_URL_CHARS}")
            try:
                checked.append(check_url(url))
            except ValueError as exc:
                raise ValueError(f"{url!r} is not an http:// or https:// URL ({exc})") from None
        unique = tuple(dict.fromkeys(checked))
        if len(unique) > MAX_HOOK_URLS:
            raise ValueError(f"{len(unique)} URLs, at most {MAX_HOOK_URLS}")
        return unique

    def columns(self) -> dict[str, list[str]]:
        """The store's ``notify`` value: trigger -> URLs, triggers without URLs left out."""
        return {t: list(getattr(self, t)) for t in HOOK_TRIGGERS if getattr(self, t)}


def hook_urls(notify: Mapping[str, Sequence[str]], event_type: str) -> tuple[str, ...]:
    """The URLs of a job's ``notify`` (the store's column) for an event of ``event_type``."""
    trigger = trigger_of(event_type)
    return tuple(notify.get(trigger, ())) if trigger else ()


def merged_hooks(current: Mapping[str, Sequence[str]], change: Any) -> Any:
    """A job's hooks after a partial change (``PATCH``, ``qwc jobs edit``): the triggers
    ``change`` names replace the job's (``null`` or ``[]`` clears one); ``change`` None
    clears them all. Anything else is returned as it is, for validation to refuse."""
    if change is None:
        return {}
    if not isinstance(change, Mapping):
        return change
    return {**{t: list(u) for t, u in current.items()}, **change}


def shown_hooks(notify: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``notify`` as listings show it: each URL redacted (scheme, host, port)."""
    return {t: [redact_webhook_url(u) for u in urls] for t, urls in notify.items() if urls}
