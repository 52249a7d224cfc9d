"""The page opens an execution's output: its JavaScript runs in headless Chromium, served by
the manager's app in-process (every request the page makes is answered by the app through
httpx's ASGI transport; no server process, no cluster), with the app's Content-Security-Policy.

The output is shown as text (markup in it stays text), with the status, exit code and reason;
the list's status cell carries the reason; the dialog closes.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.manager_fixtures import READ_TOKEN, Api, add_job
from workers.store import Store, finish_execution, insert_execution, start_execution

with contextlib.suppress(ImportError):  # no dev extra: the browser fixture says so
    from playwright.sync_api import Browser, Page, Route, expect

pytestmark = pytest.mark.browser

BASE = "http://manager.test"
MEMBER = "aaaaaaaa-0000-4000-8000-000000000001"
OUTPUT = "<b>not bold</b>\n[... 123 bytes of output dropped ...]\nlast line\n"
WAIT_MS = 15_000


def _executions(store: Store) -> tuple[str, str]:
    job = add_job(store, MEMBER, "noisy", project="ops", group="")
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
    return done, skipped


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
def test_the_page_shows_an_executions_output(api: Api, store: Store, browser: Browser) -> None:
    done, skipped = _executions(store)
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
    assert problems == [], problems
