"""The page opens an execution's output: its JavaScript runs in headless Chromium, served by
the manager's app in-process (every request the page makes is answered by the app through
httpx's ASGI transport; no server process, no cluster), with the app's Content-Security-Policy.

The output is shown as text (markup in it stays text), with the status, exit code and reason;
the list's status cell carries the reason; the dialog closes. A job's History lists its
recent executions only, with how late each started; a delivery given up is listed.
"""

from __future__ import annotations

import contextlib

import pytest
import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD
from schemas.messages import FailedNotification
from tests.manager_fixtures import KEYS, READ_TOKEN, Api, add_job
from workers.store import (
    Store,
    finish_execution,
    get_execution,
    insert_execution,
    start_execution,
)

with contextlib.suppress(ImportError):  # no dev extra: the browser fixture says so
    from playwright.sync_api import Browser, Page, Route, expect

pytestmark = pytest.mark.browser

BASE = "http://manager.test"
MEMBER = "aaaaaaaa-0000-4000-8000-000000000001"
OUTPUT = "<b>not bold</b>\n[... 123 bytes of output dropped ...]\nlast line\n"
WAIT_MS = 15_000


def _executions(store: Store) -> tuple[str, str, str]:
    """Two executions of ops/noisy (one 0.1 s late), and one of ops/quiet; their ids."""
    job = add_job(store, MEMBER, "noisy", project="ops", group="")
    other = insert_execution(
        store, job_id=add_job(store, MEMBER, "quiet", project="ops", group=""),
        member_uuid=MEMBER, trigger="manual", fire_ms=4_000, now_ms=4_000,
    )  # fmt: skip
    done = insert_execution(
        store, job_id=job, member_uuid=MEMBER, trigger="manual", fire_ms=1_000, now_ms=1_000
    )
    start_execution(store, done, now_ms=1_100)
    finish_execution(
        store, done, status="timedout", now_ms=2_350, exit_code=-15, output=OUTPUT,
        reason="timed out after 1 s",
    )  # fmt: skip
    skipped = insert_execution(
        store, job_id=job, member_uuid=MEMBER, trigger="schedule", fire_ms=3_000, now_ms=3_000,
        status="skipped", reason="concurrency forbid: execution x is still running",
    )  # fmt: skip
    return done, skipped, other


def _serve_from(api: Api, page: Page) -> None:
    """Every request of the page to BASE is answered by the app in-process."""

    def forward(route: Route) -> None:
        request = route.request
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "accept", "content-type")
        }
        answer = api.request(
            request.method, request.url.removeprefix(BASE), token=None, headers=headers,
            content=request.post_data_buffer,
        )  # fmt: skip
        route.fulfill(status=answer.status_code, headers=dict(answer.headers), body=answer.content)

    page.route(f"{BASE}/**", forward)


def open_page(api: Api, browser: Browser, token: str) -> tuple[Page, list[str]]:
    """The page, served by ``api``, opened with ``token``; the errors it throws or logs
    are collected in the list."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    _serve_from(api, page)
    page.add_init_script(f"sessionStorage.setItem('qwc.manager.token', '{token}')")
    page.goto(f"{BASE}/ui/")
    return page, problems


@pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_page_shows_an_executions_output(
    api: Api, store: Store, r: redis.Redis, browser: Browser
) -> None:
    done, skipped, other = _executions(store)
    given_up = FailedNotification(
        receiver="ops-hook", event_id="ev-1", event_type="execution.failed", attempts=3,
        first_attempt_ms=5_000, failed_at_ms=9_000, error="HTTP 500", status=500, body="{}",
    )  # fmt: skip
    r.xadd(KEYS.notifications_failed, {MESSAGE_FIELD: encode(given_up)})
    page, problems = open_page(api, browser, READ_TOKEN)

    row = page.locator(f'#executions tbody tr[data-id="{done}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(row.locator(".abort")).to_be_hidden()  # it has ended
    status = page.locator(f'#executions tbody tr[data-id="{skipped}"] td.status')
    expect(status).to_have_text("skipped")
    expect(status).to_have_attribute("title", "concurrency forbid: execution x is still running")

    row.locator(".show-output").click()
    dialog = page.locator("#output")
    expect(dialog).to_be_visible()
    expect(page.locator("#output-title")).to_have_text(f"Execution {done[:8]} of ops/noisy")
    facts = page.locator("#output-facts")
    expect(facts).to_contain_text("timedout (exit -15) · timed out after 1 s · on ")
    text = page.locator("#output-text")
    assert text.text_content() == OUTPUT
    assert text.evaluate("node => node.children.length") == 0  # markup stayed text
    page.click("#output-close")
    expect(dialog).to_be_hidden()

    page.locator(f'#executions tbody tr[data-id="{skipped}"] .show-output').click()
    expect(text).to_have_text("(no output)")
    expect(facts).to_contain_text("skipped · concurrency forbid")
    page.click("#output-close")

    failure = page.locator('#failures tbody tr[data-receiver="ops-hook"]')
    expect(failure).to_contain_text("execution.failed")
    expect(failure).to_contain_text("HTTP 500")

    expect(page.locator(f'#executions tbody tr[data-id="{other}"]')).to_be_visible()
    page.locator(f'#jobs tbody tr[data-id="{_job_of(store, done)}"] .history').click()
    expect(page.locator("#executions tbody tr")).to_have_count(2)  # ops/noisy's only
    expect(page.locator(f'#executions tbody tr[data-id="{other}"]')).to_have_count(0)
    expect(row.locator("td.late")).to_have_text("0.1 s")
    expect(page.locator("#executions-summary")).to_contain_text("ops/noisy")
    assert problems == [], problems


def _job_of(store: Store, execution_id: str) -> str:
    return get_execution(store, execution_id).job_id
