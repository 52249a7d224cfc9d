"""The manager's web page in a real browser: headless Chromium (Debian's ``chromium``, driven
by Playwright through ``executable_path``; never a downloaded browser) opens the page served
by a real ``qwc manager`` against a live cluster (liveness and takeover workers with
autotakeover on, three ``qwc node``).

It sees the page say that reading needs a token (401) and that a wrong one is refused
(403); with the token, three active members; a member killed with SIGKILL turn inactive,
then dead; its jobs move (the page's jobs-per-member numbers become the store's); a click
on "Take over" (confirmed in the page's dialog; a cancel moves nothing) moves another live
member's jobs, in the page and in the store; "Run" puts a long job on a chosen member and
"Abort" stops it (the page's executions and the store agree). The page loads nothing from
another origin and throws no error. It saves a screenshot in the test's tmp dir
(``QWC_UPDATE_DOCS_SCREENSHOT=1`` also copies it to docs/manager-page.png).

Chromium: the ``browser`` fixture (tests/fixtures_browser.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import Cluster, wait_for
from tests.test_manager_api import closed_port
from tests.test_takeover_live import (
    TAKEOVER_ENV,
    add_jobs,
    open_test_store,
    owners,
    start,
    takeovers,
)
from workers.store import create_job, list_executions

with contextlib.suppress(ImportError):  # no dev extra: the browser fixture says so
    from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.processes, pytest.mark.browser]

DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "manager-page.png"
TOKEN = "browser-test-token"
WAIT_MS = 15_000
PAGE_ENV = {
    **TAKEOVER_ENV,
    "QWC_CLUSTERMODE_AUTOTAKEOVER_DELAY": "0.3",
    # inactive from 0.6 s to 2.6 s: longer than the page's 1 s between member reads, so the
    # page shows the inactive state before the dead one however the polls fall
    "QWC_CLUSTERMODE_HEARTBEAT_CONSIDERDEAD": "2.6",
    "QWC_CLUSTERMODE_REMOTEEXEC_PROCESS_INTERVAL": "0.3",
    "QWC_MANAGER_TOKEN": TOKEN,
}


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def console_error(message: Any) -> bool:
    """An error in the console that is not a refused call (the test provokes 401 and 403);
    a blocked load (Content-Security-Policy) is one."""
    return bool(message.type == "error" and "Failed to load resource" not in message.text)


def member_row(page: Page, uuid: str) -> Any:
    return page.locator(f'#members tbody tr[data-uuid="{uuid}"]')


def jobs_shown(page: Page, uuid: str) -> Any:
    return member_row(page, uuid).locator("td.jobs .count")


def add_long_job(c: Cluster, owner: str) -> str:
    """A job that runs for a minute unless aborted (no schedule: it runs when asked to)."""
    store = open_test_store(c)
    try:
        job = create_job(
            store,
            project="ops",
            group_name="",
            name="long",
            command=["sleep", "60"],
            schedule=None,
            modified_by=owner,
            now_ms=int(time.time() * 1000),
        )
        return job.id
    finally:
        store.close()


def execution_status(c: Cluster, job_id: str) -> tuple[str, str, str] | None:
    """(id, member, status) of the job's newest execution; None before it has one."""
    store = open_test_store(c)
    try:
        rows = list_executions(store, job_id=job_id, limit=1)
        return (rows[0].id, rows[0].member_uuid, rows[0].status) if rows else None
    finally:
        store.close()


def jobs_by_owner(c: Cluster) -> dict[str, int]:
    counts: dict[str, int] = {}
    for owner in owners(c).values():
        counts[owner] = counts.get(owner, 0) + 1
    return counts


# Records each state the victim's row shows, as the page changes it (a MutationObserver: the
# test sees every state the page showed, not only those present when it happens to look).
RECORD_STATES = """uuid => {
  window.statesShown = [];
  const note = () => {
    const row = document.querySelector(`#members tbody tr[data-uuid="${uuid}"]`);
    const state = row && row.dataset.state;
    const shown = window.statesShown;
    if (state && shown[shown.length - 1] !== state) shown.push(state);
  };
  note();
  new MutationObserver(note).observe(document.querySelector("#members tbody"),
    { attributes: true, childList: true, subtree: true });
}"""


def test_the_page_shows_the_cluster_live_and_takes_over_by_hand(
    cluster: Cluster, browser: Browser, tmp_path: Path
) -> None:
    cluster.extra_env.update(PAGE_ENV)
    (victim, victim_proc), (second, _), (keeper, _) = start(cluster)
    add_jobs(cluster, victim, 6, "v")
    add_jobs(cluster, second, 4, "s")
    add_jobs(cluster, keeper, 1, "k")
    long_job = add_long_job(cluster, keeper)
    port = closed_port()
    cluster.start("manager", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/ui/"), what="the manager to serve the page")

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("console", lambda m: page_errors.append(m.text) if console_error(m) else None)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{base}/")
    assert page.url == f"{base}/ui/"

    # Reads are closed: without a token the page says 401, with a wrong one 403.
    problem = page.locator("#problem")
    expect(problem).to_contain_text("401 Unauthorized", timeout=WAIT_MS)
    expect(problem).to_contain_text("Type the manager's token above")
    expect(problem).to_contain_text("qwcontrol.manager.readToken")  # where a token comes from
    expect(problem).to_contain_text("`qwc cluster up` and `qwc demo` print this page's address")
    page.fill("#token", "wrong-token")
    page.click("#token-use")
    expect(problem).to_contain_text("403 Forbidden", timeout=WAIT_MS)
    page.fill("#token", TOKEN)
    page.click("#token-use")
    expect(problem).to_be_hidden(timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.getItem('qwc.manager.token')") == TOKEN

    # Three active members, with their jobs.
    expect(page.locator("#members tbody tr")).to_have_count(3, timeout=WAIT_MS)
    for uuid, name, n in ((victim, "node-1", 6), (second, "node-2", 4), (keeper, "node-3", 2)):
        expect(member_row(page, uuid)).to_have_attribute("data-state", "active", timeout=WAIT_MS)
        expect(member_row(page, uuid).locator("td.name")).to_contain_text(name)
        expect(jobs_shown(page, uuid)).to_have_text(str(n), timeout=WAIT_MS)

    # SIGKILL one: the page shows it inactive, then dead; its jobs move to the others.
    page.evaluate(RECORD_STATES, victim)
    victim_proc.kill()
    expect(member_row(page, victim)).to_have_attribute("data-state", "dead", timeout=WAIT_MS)
    assert page.evaluate("window.statesShown") == ["active", "inactive", "dead"]
    wait_for(lambda: victim not in jobs_by_owner(cluster), timeout_s=15, what="autotakeover")
    after = jobs_by_owner(cluster)
    assert after[second] + after[keeper] == 12 and after[second] != 4 and after[keeper] != 2
    expect(jobs_shown(page, victim)).to_have_text("0", timeout=WAIT_MS)
    expect(jobs_shown(page, second)).to_have_text(str(after[second]), timeout=WAIT_MS)
    expect(jobs_shown(page, keeper)).to_have_text(str(after[keeper]), timeout=WAIT_MS)
    timeline = page.locator("#timeline")
    for state in ("inactive", "dead"):
        expect(timeline.locator(f'li.member.to-{state}[data-member="{victim}"]')).to_have_count(
            1, timeout=WAIT_MS
        )
    committed = timeline.locator(f'li.takeover.outcome-committed[data-member="{victim}"]')
    expect(committed).to_contain_text("6 job(s)", timeout=WAIT_MS)

    # "Take over" the second member's jobs by hand: cancelled first (nothing moves), then
    # confirmed with node-3 as the destination.
    take_over = member_row(page, second).locator("button.takeover")
    dialog = page.locator("dialog#confirm")
    take_over.click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-title")).to_contain_text("node-2")
    page.click("#confirm-cancel")
    expect(dialog).to_be_hidden()
    assert jobs_by_owner(cluster) == after
    take_over.click()
    expect(dialog).to_be_visible()
    page.select_option("#takeover-to", keeper)
    page.click("#confirm-ok")
    expect(page.locator("#notice")).to_contain_text(
        f"Took over {after[second]} job(s) of node-2", timeout=WAIT_MS
    )
    assert jobs_by_owner(cluster) == {keeper: 12}
    (manual,) = [t for t in takeovers(cluster) if t.outcome == "manual"]
    assert manual.dead_uuid == second and manual.destinations == {keeper: after[second]}
    expect(jobs_shown(page, second)).to_have_text("0", timeout=WAIT_MS)
    expect(jobs_shown(page, keeper)).to_have_text("12", timeout=WAIT_MS)
    expect(member_row(page, second)).to_have_attribute("data-state", "active")
    expect(timeline.locator(f'li.takeover.outcome-manual[data-member="{second}"]')).to_contain_text(
        f"{after[second]} job(s) → node-3"
    )

    # "Run on member": the long job on node-3, then "Abort" it; both confirmed.
    job_row = page.locator(f'#jobs tbody tr[data-id="{long_job}"]')
    job_row.locator("select.run-on").select_option(keeper)
    job_row.locator("button.run").click()
    expect(dialog.locator("#confirm-title")).to_contain_text("ops/long")
    page.click("#confirm-ok")
    expect(page.locator("#notice")).to_contain_text("sent to node-3: execution", timeout=WAIT_MS)
    execution, member, _ = wait_for(
        lambda: (e := execution_status(cluster, long_job)) and e[2] == "running" and e,
        what="the long job running",
    )
    assert member == keeper
    execution_row = page.locator(f'#executions tbody tr[data-id="{execution}"]')
    expect(execution_row).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    execution_row.locator("button.abort").click()
    expect(dialog.locator("#confirm-title")).to_contain_text(f"Abort execution {execution[:8]}")
    page.click("#confirm-ok")
    expect(page.locator("#notice")).to_contain_text("Abort sent", timeout=WAIT_MS)
    expect(execution_row).to_have_attribute("data-status", "aborted", timeout=WAIT_MS)
    assert execution_status(cluster, long_job) == (execution, keeper, "aborted")

    shot = tmp_path / "manager-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("QWC_UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert page_errors == []
    posts = [u for u in requested if u.endswith("/api/cluster/takeovers")]
    assert len(posts) == 1  # the cancelled dialog sent nothing
    assert all(u.startswith(f"{base}/") or u.startswith("data:") for u in requested), requested


def page_address(c: Cluster, proc: Any) -> str | None:
    """The page's address `qwc cluster up` printed, once it did."""
    log = c.logs[c.procs.index(proc)].read_text(errors="replace")
    found = re.search(r"the page: (http://\S+)", log)
    return found.group(1) if found else None


@pytest.mark.parametrize("cluster", ["embedded+sqlite"], indirect=True)
def test_the_address_cluster_up_prints_opens_the_page_without_typing_a_token(
    cluster: Cluster, browser: Browser
) -> None:
    port = closed_port()
    proc = cluster.start("cluster", "up", "--members", "2", "--manager-port", str(port))
    url = wait_for(lambda: page_address(cluster, proc), timeout_s=30, what="the page's address")
    base = f"http://127.0.0.1:{port}/ui/"
    assert url.startswith(base + "#token=")
    wait_for(lambda: answers(base), timeout_s=30, what="the manager to serve the page")

    page = browser.new_page()
    page.goto(url)
    rows = page.locator("#members tbody tr")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    for row in rows.all():
        expect(row).to_have_attribute("data-state", "active", timeout=WAIT_MS)
    expect(page.locator("#problem")).to_be_hidden()
    assert page.url == base  # the token left the address bar (and the history entry)
    token = url.partition("#token=")[2]
    assert page.evaluate("sessionStorage.getItem('qwc.manager.token')") == token
    tokens = cluster.home / "manager-tokens.properties"
    assert tokens.stat().st_mode & 0o777 == 0o600 and token in tokens.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
