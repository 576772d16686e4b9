"""pytest fixtures and page helpers for the browser tests (Debian's chromium, Playwright).

Import the fixtures into a test module: ``from tests.e2e.browser.fixtures import *``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from sessions_app.tcp_proxy import TcpProxy
from tests import engines
from tests.e2e.browser.site import DemoSite, Process, in_thread
from tests.e2e.servers import session_with_token

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The background-networking flags matter on a closed network: chromium would otherwise stall
# on lookups it cannot make.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The docs' screenshots are only rewritten on request (`make screenshots`): a test run must leave
# the tracked files as they were.
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR")
DEMO_USER, DEMO_PASSWORD = "demo", "demo"
TIMEOUT_MS = 20_000
AGENT_PACE = os.environ.get("E2E_AGENT_PACE", "0.06")  # seconds per token

__all__ = ["browser", "demo_site", "agent", "proxy", "new_page"]


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    site = DemoSite(tmp_path_factory.mktemp("browser-site"))
    if site.env["DATABASE_URL"].startswith("postgres"):
        pytest.skip("the browser tests run on the embedded default (SQLite file, in-memory layer)")
    site.setup()
    site.start()
    try:
        yield site
    finally:
        site.cleanup()


@pytest.fixture(scope="module")
def agent(demo_site: DemoSite) -> Iterator[Process]:
    """The demo agent: a separate process that reaches the site over the network."""
    # A slower pace than `make run` gives the tests time to act mid-answer.
    args = [sys.executable, "manage.py", "demo_agent", "--url", demo_site.url]
    args += ["--user", DEMO_USER, "--pace", AGENT_PACE]
    process = Process("agent", args, demo_site.env)
    process.start()
    try:
        wait_until_answering(demo_site, process)
        yield process
    finally:
        process.stop()
        if not os.environ.get("KEEP_E2E_LOGS"):
            process.log.unlink(missing_ok=True)


def wait_until_answering(site: DemoSite, process: Process, timeout: float = 60) -> None:
    """Send a message in a fresh session and wait until the agent starts a run to answer it."""
    token = session_with_token(site.env, "warm-up", user=DEMO_USER)
    url = site.url.replace("http://", "ws://") + f"/ws/sessions/?token={token}"

    async def ask() -> None:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "session": "warm-up", "after": "now"}))
            await ws.send(json.dumps({"op": "send_message", "session": "warm-up", "text": "hi"}))
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "error":
                    raise AssertionError(frame)
                if frame["type"] == "events" and any(
                    e["type"] == "RUN_STARTED" for e in frame["events"]
                ):
                    return

    try:
        in_thread(lambda: asyncio.wait_for(ask(), timeout))
    except TimeoutError:
        raise AssertionError(f"the agent did not answer:\n{process.output()}") from None


@pytest.fixture(scope="module")
def proxy(demo_site: DemoSite) -> Iterator[TcpProxy]:
    tcp = TcpProxy(demo_site.port).start()
    try:
        yield tcp
    finally:
        tcp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if engines.real_pass():
        pytest.skip("the browser tests run in the first pass (SQLite, in-memory layer)")
    if not Path(CHROMIUM).exists():
        message = f"no chromium at {CHROMIUM}: apt-get install -y chromium"
        if engines.in_ci():
            pytest.fail(message)  # in CI these tests are required, never silently skipped
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def new_page(browser: Any, proxy: TcpProxy) -> Iterator[Any]:
    """``new_page(label)``: a logged-in page in a context of its own (another device)."""
    contexts = []

    def make(label: str = "laptop", width: int = 1100, height: int = 760) -> ChatPage:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = ChatPage(context.new_page(), proxy.url, label)
        page.login()
        return page

    yield make
    for context in contexts:
        context.close()


class ChatPage:
    """A page of the demo chat, and what a user sees and does on it."""

    def __init__(self, page: Any, base: str, label: str) -> None:
        self.page, self.base, self.label = page, base, label
        self.sent: list[dict[str, Any]] = []  # every frame this page sent on a WebSocket
        self.errors: list[str] = []
        page.on("websocket", self._watch)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _watch(self, ws: Any) -> None:
        ws.on("framesent", lambda payload: self.sent.append(_json(payload)))

    def login(self) -> None:
        self.page.goto(f"{self.base}/chat/")  # not logged in yet: sent to the login page
        self.page.wait_for_url(re.compile(r".*/chat/login/\?next=/chat/$"))
        self.page.get_by_label("User name").fill(DEMO_USER)
        self.page.get_by_label("Password").fill(DEMO_PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(r".*/chat/$"))
        # What `?label=` on a chat page does: name this device in presence.
        self.page.evaluate("l => sessionStorage.setItem('demo-chat:label', l)", self.label)

    def new_session(self, title: str) -> str:
        self.page.get_by_label("Title of the new session").fill(title)
        self.page.get_by_role("button", name="New session").click()
        self.page.wait_for_url(re.compile(r".*/chat/s-[0-9a-f]+/$"))
        self.wait_status("connected")
        return self.page.url.rstrip("/").rsplit("/", 1)[1]

    def open(self, session: str, query: str = "") -> None:
        self.page.goto(f"{self.base}/chat/{session}/{'?' + query if query else ''}")
        self.wait_live()

    def wait_status(self, *statuses: str, timeout: float = TIMEOUT_MS) -> str:
        selector = ", ".join(f'#connection[data-status="{s}"]' for s in statuses)
        self.page.wait_for_selector(selector, timeout=timeout)
        return self.status()

    def status(self) -> str:
        return self.page.get_attribute("#connection", "data-status")

    def wait_live(self) -> None:
        self.wait_status("connected", "resumed")

    def send(self, text: str) -> None:
        self.page.get_by_label("Message", exact=True).fill(text)
        self.page.get_by_role("button", name="Send").click()

    def assistant_texts(self) -> list[str]:
        return self.page.locator(".run .msg .text").all_inner_texts()

    def assistant_text(self) -> str:
        texts = self.assistant_texts()
        return texts[-1] if texts else ""

    def wait_text_longer_than(self, chars: int) -> str:
        self.page.wait_for_function(
            "n => { const t = [...document.querySelectorAll('.run .msg .text')].at(-1);"
            " return t && t.textContent.length > n; }",
            arg=chars,
        )
        return self.assistant_text()

    def run_statuses(self) -> list[str]:
        return self.page.locator(".run").evaluate_all("els => els.map(e => e.dataset.status)")

    def wait_run_status(self, status: str, timeout: float = 30_000) -> None:
        self.page.wait_for_function(
            "s => { const runs = [...document.querySelectorAll('#timeline > .run')];"
            " return runs.length && runs.at(-1).dataset.status === s; }",
            arg=status,
            timeout=timeout,
        )

    def subscribes(self, at_least: int = 0) -> list[dict[str, Any]]:
        """The subscribe frames this page sent; wait (up to 5 s) until there are ``at_least``."""
        deadline = time.monotonic() + 5
        while True:
            frames = [f for f in self.sent if f.get("op") == "subscribe"]
            if len(frames) >= at_least or time.monotonic() > deadline:
                return frames
            self.page.wait_for_timeout(50)  # lets Playwright deliver the frame events

    def stored_offset(self, session: str) -> str:
        raw = self.page.evaluate(
            "name => sessionStorage.getItem('durable-sessions:session:' + name)", session
        )
        return json.loads(raw)["offset"] if raw else "-1"

    def screenshot(self, name: str) -> Path:
        path = screenshot_folder() / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def screenshot_folder() -> Path:
    """Where screenshots go: SCREENSHOTS_DIR when set, else one scratch folder per run (the
    tracked docs/screenshots/ are written only on request)."""
    import tempfile

    global SCREENSHOTS_DIR
    if not SCREENSHOTS_DIR:
        SCREENSHOTS_DIR = tempfile.mkdtemp(prefix="screenshots-")
    folder = Path(SCREENSHOTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _json(payload: Any) -> dict[str, Any]:
    try:
        return json.loads(payload)
    except (TypeError, ValueError):
        return {}
