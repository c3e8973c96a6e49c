"""Debian's Chromium driven by playwright (never a browser playwright downloads), for the report page's tests."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    """The system Chromium (``apt-get install chromium``), or None."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the PyPI package playwright is not installed (extra 'test')"
    if chromium_path() is None:
        return "no system Chromium on PATH (Debian: apt-get install -y chromium)"
    return None


@contextmanager
def chromium_context(user_data_dir: Path, width_px: int = 1280, height_px: int = 900):
    """A fresh headless Chromium profile in ``user_data_dir``; yields playwright's browser context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": width_px, "height": height_px})
        try:
            yield context
        finally:
            context.close()
