"""``qwc notifications test|failed|retry``: try a receiver, see and resend what failed."""

from __future__ import annotations

import json
import time
from typing import Any

import click
import httpx
import redis

from schemas.errors import NotFoundError
from schemas.events import EventType
from schemas.keys import Keys
from schemas.messages import Event, FailedNotification
from schemas.settings import Settings
from schemas.settings_webhooks import URL_ALLOWED, check_url
from workers.bus.connect import connect
from workers.cli.common import CliContext, echo_json, fail, opened_store, pass_cli
from workers.notify.deliver import Answer, post
from workers.notify.failed import get_failed, list_failed, remove_failed
from workers.notify.hooks import hook_url_of
from workers.notify.payload import body_of, headers_for
from workers.notify.samples import sample_event
from workers.notify.schedule import Verdict, verdict
from workers.store import get_job

__all__ = ["COMMANDS"]

COLUMNS = ("id", "failed_at", "receiver", "event_type", "attempts", "event_id", "error")


@click.group()
def notifications() -> None:
    """Webhook notifications: try a receiver, list and resend deliveries given up.

    Receivers are configured as qwcontrol.notifications.webhooks.<name>.url and .events;
    `qwc worker notify` delivers to them (docs/notifications.md).
    """


@notifications.command("test")
@click.argument("url")
@click.option(
    "--event",
    "kind",
    type=click.Choice([t.value for t in EventType]),
    default=EventType.NOTIFICATION_TEST.value,
    show_default=True,
    help="The type of the sample event (its payload is shaped as a real one's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_cli
def test(cli: CliContext, url: str, kind: str, as_json: bool) -> None:
    """POST a sample event to URL and print the receiver's answer.

    The event is signed (X-QWC-Signature) when qwcontrol.notifications.secret is set, and
    the answer awaited qwcontrol.notifications.timeout seconds; the sample's id is
    <type>:test-<random> and its data carries "test": true. Exit status 0 when the
    receiver answered 2xx, 1 otherwise, 2 for a URL that is not http(s).
    """
    settings = cli.settings()
    try:
        check_url(url)
    except ValueError as exc:
        fail(f"notifications test: URL {url!r}: {URL_ALLOWED} ({exc})", 2)
    event = sample_event(kind, time.time_ns() // 1_000_000)  # no cluster needed: this clock
    body = body_of(event, settings.redis_prefix)
    answer = _post(settings, url, event, body, attempt=1)
    _show(answer, event, signed=settings.notification_secret is not None, as_json=as_json)
    raise SystemExit(0 if verdict(answer.status) is Verdict.DELIVERED else 1)


@notifications.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--receiver", default=None, help="Only the deliveries to this receiver.")
@pass_cli
def failed(cli: CliContext, as_json: bool, limit: int, receiver: str | None) -> None:
    """The deliveries given up, newest first: id (for `qwc notifications retry`), when,
    receiver, event type and id, attempts, last error.

    An event lands here when its receiver kept failing (no answer, 408, 429, 5xx) until
    qwcontrol.notifications.retry.horizon, or answered a final refusal (3xx, other 4xx).
    With --json each object also has the HTTP status and the event's payload.
    """
    settings = cli.settings()
    rows = _with_redis(settings, lambda r, k: list_failed(r, k, limit=limit, receiver=receiver))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no delivery given up")
        return
    lines = [COLUMNS, *([str(row[c]) for c in COLUMNS] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS) - 1)]
    for line in lines:
        click.echo(
            "  ".join([*(f"{v:<{w}}" for v, w in zip(line, widths, strict=False)), line[-1]])
        )


@notifications.command("retry")
@click.argument("entry_id", metavar="ID")
@pass_cli
def retry(cli: CliContext, entry_id: str) -> None:
    """Send a delivery given up (ID from `qwc notifications failed`) once more, to its
    receiver as configured now (a job's own webhook, receiver job:TRIGGER:URL: if the job
    still has that URL for that trigger); remove it from the list when it answers 2xx.

    Exit status 0 when delivered, 1 when the receiver failed again (the entry stays),
    2 when there is no such entry or its receiver is no longer configured.
    """
    settings = cli.settings()
    try:
        found = _with_redis(settings, lambda r, k: get_failed(r, k, entry_id))
    except redis.ResponseError:
        found = None
    if found is None:
        fail(
            f"notifications retry: no failed delivery {entry_id!r} (see qwc notifications failed)",
            2,
        )
        return
    url = _url_now(cli, found)
    if url is None:
        fail(f"notifications retry: receiver {found.receiver!r} is not configured any more", 2)
        return
    event = Event(id=found.event_id, kind=found.event_type, at_ms=found.first_attempt_ms)
    answer = _post(settings, url, event, found.body.encode(), attempt=found.attempts + 1)
    if verdict(answer.status) is not Verdict.DELIVERED:
        fail(f"notifications retry: {found.event_id} to {found.receiver}: {answer.error}", 1)
    _with_redis(settings, lambda r, k: remove_failed(r, k, entry_id))
    click.echo(f"{found.event_id} delivered to {found.receiver} (HTTP {answer.status}); removed")


def _url_now(cli: CliContext, found: FailedNotification) -> str | None:
    """The URL of ``found``'s receiver as configured now: a configured receiver's, or a
    job's own webhook (``job:…``: the job's hooks in the store now)."""
    settings = cli.settings()
    if not found.receiver.startswith("job:"):
        hooks = settings.notification_webhooks
        return next((w.url for w in hooks if w.name == found.receiver), None)
    try:
        job_id = str(json.loads(found.body)["data"]["job"]["id"])
    except (ValueError, KeyError, TypeError):
        return None
    with opened_store(cli) as store:
        try:
            job = get_job(store, job_id)
        except NotFoundError:
            return None
    return hook_url_of(found.receiver, job.notify)


COMMANDS: list[click.Command] = [notifications]


def _with_redis(settings: Settings, call: Any) -> Any:
    client = connect(settings, client_name="qwc-cli")
    try:
        return call(client, Keys(settings.redis_prefix))
    except redis.RedisError as exc:
        fail(f"notifications: Redis does not answer ({exc})")
    finally:
        client.close()


def _post(settings: Settings, url: str, event: Event, body: bytes, *, attempt: int) -> Answer:
    secret = settings.notification_secret
    headers = headers_for(
        event, body, secret=secret.get_secret_value() if secret else None, attempt=attempt
    )
    with httpx.Client() as client:
        return post(client, url, body, headers, timeout_s=settings.notification_timeout_s)


def _show(answer: Answer, event: Event, *, signed: bool, as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "event_id": event.id,
                "event_type": event.kind,
                "signed": signed,
                "status": answer.status,
                "error": answer.error or None,
                "elapsed_ms": answer.elapsed_ms,
                "body": answer.body,
            }
        )
        return
    sign = (
        "signed (X-QWC-Signature)" if signed else "not signed: qwcontrol.notifications.secret unset"
    )
    click.echo(f"sent {event.kind} {event.id}, {sign}")
    if answer.status is None:
        click.echo(f"no answer: {answer.error}")
        return
    click.echo(f"HTTP {answer.status} in {answer.elapsed_ms} ms")
    if answer.body:
        click.echo(answer.body)
