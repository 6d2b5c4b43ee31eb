"""A runtime on the real broker, the HTTP API with its page, and a headless Chromium.

Chromium is Debian's package (``.ci/install-chromium``), driven through Playwright's
Python client; Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import WorkflowClient, WorkflowRuntime
from engine.api.http_api import serve_in_thread
from tests.integration.engine.conftest import client, settings, start_runtime  # noqa: F401 (fixtures)
from tests.integration.ui import workflows

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-output" / "ui"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session; a missing browser is a failure, not a skip."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the UI tests need Debian's chromium; run .ci/install-chromium as root")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]' (never 'playwright install')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Site:
    """The page's address, the client that starts instances, and a way to save screenshots."""

    base: str
    client: WorkflowClient

    def url(self, fragment: str = "") -> str:
        return f"{self.base}/ui/{fragment}"


@pytest.fixture
def site(start_runtime: Callable[..., WorkflowRuntime], client: WorkflowClient) -> Iterator[Site]:  # noqa: F811
    runtime = start_runtime(workflows.register)
    port = free_port()
    server = serve_in_thread(runtime, "127.0.0.1", port)
    yield Site(f"http://127.0.0.1:{port}", client)
    server.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


def screenshot(page: Any, name: str) -> Path:
    """Save the whole page under test-output/ui/ for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
