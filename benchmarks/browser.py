"""The web app's Live tab in headless Chromium with a fake webcam: what the browser benchmarks share.

The same steps as tests/test_ui_browser.py (which imports them from here): the system Chromium
(never `playwright install`), a .y4m clip as the camera, one browser context per visitor.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path(os.environ.get("STREAMDREAM_CHROMIUM", "/usr/bin/chromium"))
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chromium(camera: Path) -> Iterator:
    """Headless Chromium whose webcam plays `camera` (a .y4m clip, looped at its frame rate)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=[*BROWSER_ARGS, f"--use-file-for-fake-video-capture={Path(camera).resolve()}"])
        try:
            yield browser
        finally:
            browser.close()


def open_live(browser, url: str, init_script: str | None = None):
    """A new visitor (browser context) on the Live tab; `init_script` runs in the page before the app's own."""
    context = browser.new_context(permissions=["camera"], viewport={"width": 1280, "height": 900})
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.goto(url, timeout=90_000)
    page.get_by_role("tab", name="Live").click()
    page.wait_for_selector("#live-input", timeout=60_000)
    return context, page


def start_webcam(page) -> None:
    page.locator("#live-input").get_by_text("Click to Access Webcam").click()
    page.locator("#live-input button", has_text="Record").first.click(timeout=30_000)

