"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by playwright, never a downloaded browser.

Without Chromium or playwright a browser test skips with the reason, except in CI (``CI`` set), where
it fails: `scripts/ensure-chromium.sh` installs both, and CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "viz"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("ATTNKIT_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _unavailable(reason: str):
    reason = f"{reason}; run scripts/ensure-chromium.sh to install it"
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium_context(viewport=(1100, 1000)):
    """A fresh headless Chromium (own user-data dir) that may only load local files.

    Any request that is not a local file is aborted and noted in ``context.attnkit_problems``: the
    explorer must open offline.
    """
    executable = chromium_path()
    if executable is None:
        _unavailable("Debian's chromium is not installed (no /usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")

    with (
        tempfile.TemporaryDirectory(prefix="attnkit-chromium-") as user_data,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            user_data,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        context.set_default_timeout(15_000)
        context.attnkit_problems = []
        try:

            def block_network(route):
                if route.request.url.startswith(("file:", "data:", "blob:")):
                    return route.continue_()
                context.attnkit_problems.append(f"network request to {route.request.url}")
                return route.abort()

            context.route("**/*", block_network)
            yield context
        finally:
            context.close()


def open_page(context):
    """A new page of ``context`` and the list its uncaught JS errors and console errors go to."""
    problems = context.attnkit_problems = []  # the network guard reports to the newest page's list
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(f"uncaught JS error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console error: {message.text}") if message.type == "error" else None
        ),
    )
    return page, problems
