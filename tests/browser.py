"""Browser-test helper: open a file:// or http:// URL in Debian's headless Chromium (via Playwright), collect
console errors, page errors and requests that leave the page's origin, take a screenshot, check it is not blank.

Usage in a test::

    from browser import open_in_chromium, assert_not_blank
    result = open_in_chromium(path.as_uri(), tmp_path / "page.png")
    assert not result.console_errors
    assert_not_blank(result.screenshot)

``require_chromium()`` skips the test, with the reason, only where /usr/bin/chromium (Debian's package
``chromium``) or Playwright is missing.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def find_chromium() -> str | None:
    """Path of Debian's Chromium, or None."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    return shutil.which("chromium")


def require_chromium() -> str:
    """The Chromium executable; skips the calling test with a clear reason where it or Playwright is missing."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; scripts/setup does it)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed in .venv")
    return executable


@dataclass
class PageResult:
    """What happened while a page loaded."""

    url: str
    title: str
    screenshot: bytes
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    evaluated: Any = None

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught page errors and failed requests together."""
        return self.console_errors + self.page_errors + self.failed_requests


def _same_origin(url: str, request_url: str) -> bool:
    if request_url.startswith(("data:", "blob:", "about:")):
        return True
    if url.startswith("file://"):
        return request_url.startswith("file://")
    origin = "/".join(url.split("/")[:3])
    return request_url.startswith(origin)


def open_in_chromium(url: str, screenshot_path: str | Path, viewport: tuple[int, int] = (1366, 900),
                     full_page: bool = False, evaluate: str | None = None,
                     interact: Callable[[Any], None] | None = None, timeout_ms: int = 30_000) -> PageResult:
    """Load ``url`` in a fresh headless Chromium (new empty profile), wait for the load event, optionally run
    ``interact(page)`` and the JavaScript expression ``evaluate``, save a screenshot to ``screenshot_path``."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    screenshot_path = Path(screenshot_path)
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []
    page_errors: list[str] = []
    failed: list[str] = []
    outside: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.new_page()
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            page.on("request", lambda r: None if _same_origin(url, r.url) else outside.append(r.url))
            page.goto(url, wait_until="load", timeout=timeout_ms)
            if interact is not None:
                interact(page)
            evaluated = page.evaluate(evaluate) if evaluate else None
            png = page.screenshot(path=str(screenshot_path), full_page=full_page)
            title = page.title()
        finally:
            context.close()
    return PageResult(url=url, title=title, screenshot=png, console_errors=console_errors,
                      page_errors=page_errors, failed_requests=failed, outside_requests=outside,
                      evaluated=evaluated)


def pixel_std(png: bytes) -> float:
    """Standard deviation of the screenshot's RGB values (0 for a one-colour image)."""
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32).std())


def assert_not_blank(png: bytes, min_std: float = 15.0, min_colours: int = 50) -> None:
    """Fail unless the screenshot has real content: spread-out pixel values and many distinct colours."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.uint8).reshape(-1, 3)
    std = float(pixels.astype(np.float32).std())
    colours = len(np.unique(pixels[::37], axis=0))
    assert std > min_std, f"screenshot is (nearly) one colour: pixel std {std:.1f}"
    assert colours > min_colours, f"screenshot has only {colours} distinct colours"
