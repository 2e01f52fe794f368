"""What the browser tests share: where the built book is, how Chromium starts, and one page visit.

The fixtures (a local web server, the browser) are in conftest.py; see
test_book.py (every page) and test_live.py (the explorers, live in the page).
"""

from __future__ import annotations

import http.server
import os
import re
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("TLBOOK_ROOT", REPO)).resolve()
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("TLBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Requests whose failure does not matter to a reader, as (regex on the URL path, why).
HARMLESS_MISSING: list[tuple[str, str]] = [
    (r"^/favicon\.ico$", "the book has no favicon; browsers ask for one anyway"),
    (r"\.js\.map$", "source maps: only developer tools ask for them, and they are not shipped"),
]

# Console messages that are known to be harmless, as (regex, why). Anything else fails.
HARMLESS_CONSOLE: list[tuple[str, str]] = [
    (
        r"^uncaught: Identifier 'THEBE_JS_URL' has already been declared$",
        "Sphinx 7 writes inline (body-only) <script>s that extensions add while building twice into "
        "every page; sphinx-thebe's is `const THEBE_JS_URL = …`, so the second copy fails to re-declare "
        "it. The first copy already set the same values, and the book has no live-code (thebe) button.",
    ),
]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built book without logging every request."""

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class Visit:
    """One page opened in a fresh tab, with everything that went wrong while loading it."""

    def __init__(self, browser, base: str, path: str):
        self.base, self.path = base, path
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.external: list[str] = []
        self.failed: list[str] = []
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.console_errors.append(f"uncaught: {error}"))
        self.page.on("requestfailed", self._on_failed)
        self.page.on("response", self._on_response)
        self.page.route("**/*", self._only_local)
        self.response = self.page.goto(f"{base}/{path}", wait_until="load")

    def _only_local(self, route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", None) or route.request.url.startswith("data:"):
            route.continue_()
        else:  # a CDN or any other outside address: the book must not need it
            self.external.append(route.request.url)
            route.abort()

    def _on_console(self, message):
        if message.type == "error":
            self.console_errors.append(message.text)

    def _harmless(self, url: str) -> bool:
        return any(re.search(rx, urlparse(url).path) for rx, _ in HARMLESS_MISSING)

    def _on_failed(self, request):
        if not request.url.startswith(self.base) or self._harmless(request.url):
            return
        self.failed.append(f"{request.url}: {request.failure}")

    def _on_response(self, response):
        if response.status >= 400 and not self._harmless(response.url):
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def close(self):
        self.context.close()


def console_filtered(messages: list[str]) -> list[str]:
    """Console errors that matter: without failed requests (reported on their own) and known harmless ones."""
    # Chromium also reports every failed request as a console error; those are
    # reported (with their URL) by the request checks already.
    return [
        m
        for m in messages
        if not m.startswith("Failed to load resource") and not any(re.search(rx, m) for rx, _ in HARMLESS_CONSOLE)
    ]
