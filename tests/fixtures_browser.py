"""Browser fixture: ``browser``, Debian's headless Chromium driven by Playwright (never a
downloaded browser).

``QWC_TEST_CHROMIUM`` names the browser to use, and a browser named there that does not run
fails the test (CI sets it); unset, /usr/bin/chromium is used when present, and a test that
needs it is skipped when it is not. Playwright is imported only when a test asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["CHROMIUM_ENV", "DEBIAN_CHROMIUM", "browser", "chromium"]

CHROMIUM_ENV = "QWC_TEST_CHROMIUM"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")


def chromium() -> tuple[str, bool]:
    """The browser to drive and whether it was asked for (QWC_TEST_CHROMIUM)."""
    asked = os.environ.get(CHROMIUM_ENV)
    if asked:
        return asked, True
    if not DEBIAN_CHROMIUM.exists():
        pytest.skip(
            "no Chromium: install Debian's package (apt-get install chromium) or set "
            f"{CHROMIUM_ENV} to a Chromium binary; CI installs it and sets {CHROMIUM_ENV}"
        )
    return str(DEBIAN_CHROMIUM), False


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Chromium through Playwright; fails when the browser does not run."""
    path, asked = chromium()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed: pip install -e '.[dev]'"
        pytest.fail(message) if asked else pytest.skip(message)
    with sync_playwright() as pw:
        try:
            launched = pw.chromium.launch(executable_path=path, headless=True)
        except PlaywrightError as e:
            pytest.fail(f"Chromium at {path} does not run ({CHROMIUM_ENV}={path!r}): {e}")
        try:
            yield launched
        finally:
            launched.close()
