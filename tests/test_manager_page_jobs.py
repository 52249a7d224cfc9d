"""The page disables, enables and deletes a job, each after a confirmation: its JavaScript
runs in headless Chromium, served by the manager's app in-process (every request the page
makes is answered by the app through httpx's ASGI transport), with the write token.

A cancelled confirmation changes nothing; a confirmed one changes the store (both flags,
the owner epoch; the deletion) and the page shows it (the badge, the button, the row gone).
"""

from __future__ import annotations

import contextlib

import pytest

from tests.manager_fixtures import WRITE_TOKEN, Api, add_job
from tests.test_manager_page_output import WAIT_MS, open_page
from workers.store import Store, get_job, list_jobs

with contextlib.suppress(ImportError):  # no dev extra: the browser fixture says so
    from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

MEMBER = "aaaaaaaa-0000-4000-8000-000000000001"


def _confirm(page: Page, title: str, *, ok: bool) -> None:
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text(title)
    page.click("#confirm-ok" if ok else "#confirm-cancel")
    expect(dialog).to_be_hidden()


@pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_page_disables_enables_and_deletes_a_job(
    api: Api, store: Store, browser: Browser
) -> None:
    job_id = add_job(store, MEMBER, "nightly", project="ops", group="", schedule="0 2 * * *")
    page, problems = open_page(api, browser, WRITE_TOKEN)

    row = page.locator(f'#jobs tbody tr[data-id="{job_id}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    toggle, badge = row.locator(".toggle"), row.locator("td.job .badge")
    expect(toggle).to_have_text("Disable")
    expect(badge).to_be_hidden()

    toggle.click()
    _confirm(page, "Disable ops/nightly?", ok=False)
    assert get_job(store, job_id).owner_epoch == 1  # cancelled: nothing sent

    toggle.click()
    _confirm(page, "Disable ops/nightly?", ok=True)
    expect(page.locator("#notice")).to_have_text("ops/nightly disabled (owner epoch 2).")
    job = get_job(store, job_id)
    assert (job.schedule_enabled, job.execution_enabled, job.owner_epoch) == (False, False, 2)
    expect(badge).to_have_text("disabled", timeout=WAIT_MS)
    expect(toggle).to_have_text("Enable")
    expect(row).to_have_attribute("data-enabled", "false")

    toggle.click()
    _confirm(page, "Enable ops/nightly?", ok=True)
    expect(page.locator("#notice")).to_have_text("ops/nightly enabled (owner epoch 3).")
    expect(toggle).to_have_text("Disable", timeout=WAIT_MS)
    expect(badge).to_be_hidden()
    job = get_job(store, job_id)
    assert (job.schedule_enabled, job.execution_enabled) == (True, True)

    row.locator(".delete").click()
    _confirm(page, "Delete ops/nightly?", ok=False)
    assert [j.id for j in list_jobs(store)] == [job_id]
    row.locator(".delete").click()
    _confirm(page, "Delete ops/nightly?", ok=True)
    expect(page.locator("#notice")).to_have_text("Deleted ops/nightly.")
    expect(row).to_have_count(0, timeout=WAIT_MS)
    assert list_jobs(store) == []
    assert problems == [], problems
