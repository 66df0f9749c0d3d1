"""Playwright driving the system's Chromium (the Debian package): Playwright's own browser
download is not reachable here, so the browser is launched by its executable path."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from refresh_assets.settings import PROJECT_DIR


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is missing: run `make test-deps` (Debian: apt-get install chromium)")


@contextmanager
def chromium_browser() -> Iterator:
    """A headless Chromium; close pages yourself, the browser is closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            # Run as root in CI containers: Chromium refuses its sandbox there.
            args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def artifacts_dir(name: str) -> Path:
    """Where a browser test leaves its screenshots: $REFRESH_TEST_ARTIFACTS/<name>
    (default `test-artifacts/` in the project, ignored by git)."""
    root = Path(os.environ.get("REFRESH_TEST_ARTIFACTS") or PROJECT_DIR / "test-artifacts")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
