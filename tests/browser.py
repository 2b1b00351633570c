"""Debian's Chromium, headless, driven by Playwright: the ``browser`` fixture of the browser tests.

No browser is downloaded (``playwright install`` is never run): Playwright launches the
system's ``chromium`` (``.ci/run`` installs Debian's package; ``CHROMIUM=/path`` picks
another). A missing Chromium or Playwright is an error in the tests that need them, not a
skip: ``tox -e browser`` must fail on a machine that cannot run them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not os.path.exists(path):
        pytest.fail(f"no chromium ({path or 'not on PATH'}): apt-get install -y chromium (as .ci/run does), "
                    "or set CHROMIUM=/path")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; each test makes its own contexts (users)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test,browser]' (tox -e browser does)")
    executable = chromium_path()
    with sync_playwright() as playwright:
        # As root (CI containers) Chromium's sandbox cannot start; the pages are our own.
        browser = playwright.chromium.launch(executable_path=executable, headless=True, chromium_sandbox=False)
        try:
            yield browser
        finally:
            browser.close()
