"""Feedback in the demo chat, in a real browser: a user rates an answer on one device, the
rating shows on another, a later rating replaces it, and the session's export carries the
conversation (chat JSONL) with its rating."""

from __future__ import annotations

import json

import pytest

from tests.e2e.browser.fixtures import *  # noqa: F403  (fixtures: demo_site, agent, proxy, browser, new_page)
from tests.e2e.browser.fixtures import DEMO_USER
from tests.e2e.browser.site import log_events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def pressed(page, rating: str) -> str:
    button = page.page.locator(f".run .msg .rate-{rating}").last
    return f"{button.get_attribute('aria-pressed')}:{button.locator('.count').inner_text()}"


def wait_pressed(page, rating: str, count: str) -> None:
    page.page.wait_for_selector(
        f'.run .msg .rate-{rating}[aria-pressed="true"] .count:text-is("{count}")'
    )


def test_a_rating_on_one_device_shows_on_another_and_a_later_one_replaces_it(
    demo_site, agent, proxy, new_page
):
    laptop = new_page("laptop")
    session = laptop.new_session("Feedback")
    laptop.send("What is a session log?")
    laptop.wait_run_status("finished")
    laptop.page.locator(".run .msg .rate-down").last.click()
    wait_pressed(laptop, "down", "1")

    phone = new_page("phone", width=390, height=800)
    phone.open(session)
    wait_pressed(phone, "down", "1")  # the same user on another device: their rating
    phone.page.locator(".run .msg .rate-up").last.click()
    wait_pressed(laptop, "up", "1")  # replaced, live, on the first device
    assert pressed(laptop, "down") == "false:"

    rated = [
        e
        for e in log_events(demo_site, session)
        if e["type"] == "CUSTOM" and e["data"]["name"] == "sessions.FEEDBACK"
    ]  # the answer also reports usage
    assert [e["data"]["value"]["rating"] for e in rated] == ["down", "up"]
    assert {e["data"]["value"]["user"] for e in rated} == {DEMO_USER}

    lines = demo_site.manage("sessions", "export-dataset", "--min-rating", "up").splitlines()
    exported = [json.loads(line) for line in lines if line.startswith("{")]
    (mine,) = [c for c in exported if c["messages"][0]["content"] == "What is a session log?"]
    assert [m["role"] for m in mine["messages"]] == ["user", "assistant"]
    assert mine["messages"][1]["content"] == laptop.assistant_text()
    assert mine["split"] in ("train", "dev", "test")
