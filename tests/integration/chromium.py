"""Debian's Chromium, headless through Playwright, for the tests that open pages in a real
browser (site tracking, the backtest's report, the lead board): where it is, how it is
launched on a closed network, and why a test must be skipped without it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [  # a closed network: no background connections
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_missing() -> str | None:
    """Why no headless Chromium can be launched here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (`make browser` installs Debian's chromium as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (`make setup`)"
    return None


@contextmanager
def launched() -> Iterator[Any]:
    """Headless Chromium, with a fresh profile of Playwright's making (removed at close)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
