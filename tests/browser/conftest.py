"""Real Chromium (Debian's) driven by Playwright against a live server on loopback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("OVERREAD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make test`, which installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def phone(browser, live_url, tmp_path):
    """A fresh phone-sized browser context; ``phone.shot(name)`` saves a screenshot."""
    context = browser.new_context(base_url=live_url, **PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)

    def shot(name: str) -> Path:
        """Save a full-page screenshot with the test's artefacts (and in
        ``README_SCREENSHOT_DIR`` when set: that is how the README's pictures are made)."""
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if keep := os.environ.get("README_SCREENSHOT_DIR"):
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    page.shot = shot
    yield page
    context.close()
