"""The demo chat in a real browser (Debian's chromium through Playwright), against a real daphne
process and the demo agent as a separate process, with a TCP proxy between browser and server.

What a user would notice: the answer streams, survives a dead network and a server restart
with no gap and no repetition, shows up on a second device, stops when asked, and a reload
resumes where the page was instead of starting over.
"""

from __future__ import annotations

import time

import pytest

from sessions_app.agents.demo import ANSWERS
from tests.e2e.browser.fixtures import *  # noqa: F403  (fixtures: demo_site, agent, proxy, browser, new_page)
from tests.e2e.browser.site import log_events, publish, streamed_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CUT_SECONDS = 2.0


def assistant_message_ids(page) -> list[str]:
    return page.page.locator(".run .msg").evaluate_all("els => els.map(e => e.dataset.message)")


def assert_page_shows_the_log(page, site, session: str) -> list[dict]:
    """The page's assistant text equals what the agent wrote, message by message."""
    events = log_events(site, session)
    ids = assistant_message_ids(page)
    assert ids, "no assistant message on the page"
    texts = page.assistant_texts()
    for mid, shown in zip(ids, texts, strict=True):
        assert shown == streamed_text(events, mid), f"message {mid} differs from the log"
    return events


def offsets_sent_in(subscribes: list[dict]) -> list[str]:
    return [frame["after"] for frame in subscribes]


def test_answer_survives_a_network_cut_with_no_gap_and_no_repetition(
    demo_site, agent, proxy, new_page
):
    page = new_page("laptop")
    session = page.new_session("Network cut")
    page.send("Tell me a long story about durable logs")
    partial = page.wait_text_longer_than(30)

    cut_at = time.monotonic()
    killed = proxy.cut(CUT_SECONDS)
    assert killed >= 1, "the browser had no open connection through the proxy"
    page.wait_status("reconnecting", timeout=5_000)
    page.wait_status("resumed", timeout=20_000)
    assert time.monotonic() - cut_at >= CUT_SECONDS, "reconnected while the proxy refused"

    page.wait_run_status("finished")
    events = assert_page_shows_the_log(page, demo_site, session)
    final = page.assistant_text()
    assert final in ANSWERS, "the page's text is not the agent's full answer"
    assert final.startswith(partial) and len(final) > len(partial)
    deltas = [e for e in events if e["type"] == "TEXT_MESSAGE_CONTENT" and e["message"] != ""]
    assert len(deltas) > 10, "the answer was not streamed in pieces"
    # After the cut the page resumed after the offset it had, not from the start.
    afters = offsets_sent_in(page.subscribes(at_least=2))
    assert len(afters) >= 2 and afters[0] == "snapshot"
    assert afters[-1] not in ("-1", "snapshot")
    assert not page.errors
    page.screenshot("chat.png")


def test_second_device_opened_mid_run_shows_the_same_text(demo_site, agent, proxy, new_page):
    laptop = new_page("laptop")
    session = laptop.new_session("Two devices")
    laptop.send("What is a session log?")
    laptop.wait_text_longer_than(30)

    phone = new_page("phone", width=390, height=800)
    phone.open(session)
    # A fresh device asks for the folded state (one frame), not the whole history.
    assert offsets_sent_in(phone.subscribes(at_least=1)) == ["snapshot"]
    # "connected" means the socket said hello; the snapshot answers the subscribe after.
    assert phone.wait_text_longer_than(0), "the phone shows nothing of the answer so far"
    laptop.page.wait_for_selector('#presence li:has-text("phone")')
    phone.page.wait_for_selector('#presence li:has-text("laptop")')

    laptop.wait_run_status("finished")
    phone.wait_run_status("finished")
    assert phone.assistant_texts() == laptop.assistant_texts()
    assert phone.assistant_text() in ANSWERS
    assert_page_shows_the_log(phone, demo_site, session)
    phone.screenshot("chat-phone.png")
    phone.page.close()  # the phone leaves: the laptop stops listing it
    laptop.page.wait_for_selector('#presence li:has-text("phone")', state="detached")


def test_stop_cancels_the_run_on_the_server_for_every_device(demo_site, agent, proxy, new_page):
    laptop = new_page("laptop")
    session = laptop.new_session("Stop")
    phone = new_page("phone")
    phone.open(session)
    laptop.send("Count slowly to a thousand")
    laptop.wait_text_longer_than(20)

    laptop.page.get_by_role("button", name="Stop").click()
    for page in (laptop, phone):
        page.wait_run_status("cancelled")
        badge = page.page.locator("#timeline > .run .run-status").last
        assert badge.inner_text() == "cancelled"
    partial = laptop.assistant_text()
    assert partial, "the partial answer disappeared"

    time.sleep(1.0)  # the agent would have written several deltas by now
    events = log_events(demo_site, session)
    ack = next(e for e in events if e["type"] == "CONTROL_ACK")
    assert ack["data"]["action"] == "cancel"
    # After its acknowledgement the agent wrote nothing but the end of the run.
    later = [e for e in events if e["seq"] > ack["seq"]]
    assert [(e["type"], e.get("run")) for e in later] == [("RUN_FINISHED", ack["run"])], later
    assert later[0]["data"]["outcome"] == "cancelled"
    assert laptop.assistant_text() == phone.assistant_text() == partial
    assert_page_shows_the_log(laptop, demo_site, session)
    assert laptop.page.locator("#run-controls").is_hidden()


def test_reload_mid_run_resumes_from_the_stored_offset(demo_site, agent, proxy, new_page):
    page = new_page("laptop")
    session = page.new_session("Reload")
    page.send("Describe offsets in detail")
    page.wait_text_longer_than(30)

    before = page.stored_offset(session)
    assert before not in ("-1", "")
    page.sent.clear()
    page.page.reload()
    page.wait_live()

    afters = offsets_sent_in(page.subscribes(at_least=1))
    assert len(afters) == 1
    assert afters[0] not in ("-1", "snapshot"), "the reload replayed instead of resuming"
    assert afters[0] >= before
    page.wait_run_status("finished")
    assert_page_shows_the_log(page, demo_site, session)
    assert page.assistant_text() in ANSWERS


def test_team_mode_shows_sub_agent_runs_as_a_tree(demo_site, agent, proxy, new_page):
    page = new_page("laptop", width=1200, height=900)
    session = page.new_session("Team of agents")
    page.send("/team plan a trip to Lisbon")
    subruns = page.page.locator("#timeline > .run .subruns > .run")
    page.page.wait_for_function(
        "() => document.querySelectorAll('#timeline > .run .subruns > .run .msg .text').length >= 2"
        " && [...document.querySelectorAll('#timeline > .run .subruns > .run .msg .text')]"
        ".every(t => t.textContent.length > 10)"
    )
    assert subruns.count() >= 2
    page.screenshot("multi-agent-streaming.png")
    page.page.wait_for_function(
        "() => [...document.querySelectorAll('.run')].every(r => r.dataset.status === 'finished')",
        timeout=60_000,
    )
    texts = [
        subruns.nth(i).locator(".msg .text").first.inner_text() for i in range(subruns.count())
    ]
    assert all(texts) and len(set(texts)) == len(texts), "each sub-agent has its own stream"
    assert_page_shows_the_log(page, demo_site, session)
    page.screenshot("multi-agent.png")


def test_steer_from_the_keyboard_changes_the_running_answer(demo_site, agent, proxy, new_page):
    page = new_page("laptop")
    session = page.new_session("Steer")
    message = page.page.get_by_label("Message", exact=True)
    message.fill("Tell me about durable sessions")
    message.press("Enter")  # Enter sends
    page.wait_text_longer_than(10)
    steer = page.page.get_by_label("Steer the running answer")
    steer.fill("say it like a pirate")
    steer.press("Enter")

    page.page.wait_for_selector('.run-notes li:has-text("Steered: say it like a pirate")')
    if page.run_statuses()[-1] == "running":
        page.screenshot("chat-streaming.png")  # Stop and Steer are there while it runs
    page.wait_run_status("finished")
    events = log_events(demo_site, session)
    steers = [e for e in events if e["type"] == "STEER"]
    assert [e["data"]["text"] for e in steers] == ["say it like a pirate"]
    acks = [e for e in events if e["type"] == "CONTROL_ACK"]
    assert [a["data"]["action"] for a in acks] == ["steer"]
    assert "say it like a pirate" in page.assistant_text(), "the answer did not change course"
    assert_page_shows_the_log(page, demo_site, session)


def test_interrupt_cancels_the_answer_and_sends_the_new_message(demo_site, agent, proxy, new_page):
    page = new_page("laptop")
    session = page.new_session("Interrupt")
    page.send("Tell me everything about logs")
    page.wait_text_longer_than(10)
    page.page.get_by_label("Message", exact=True).fill("Actually, just say hi")
    page.page.get_by_role("button", name="Interrupt and send").click()

    first, second = (
        page.page.locator("#timeline > .run").first,
        page.page.locator("#timeline > .run").nth(1),
    )
    second.wait_for()
    page.wait_run_status("finished")
    assert first.get_attribute("data-status") == "cancelled"
    users = page.page.locator("#timeline > .msg.user .text").all_inner_texts()
    assert users == ["Tell me everything about logs", "Actually, just say hi"]
    assert page.assistant_texts()[-1] in ANSWERS
    assert_page_shows_the_log(page, demo_site, session)


def test_signed_tokens_minted_by_the_site_open_the_socket_again_after_a_cut(
    demo_site, agent, proxy, new_page
):
    page = new_page("laptop")
    session = page.new_session("Token")
    minted = []
    page.page.on("response", lambda r: minted.append(r.status) if "/chat/token/" in r.url else None)
    sockets = []
    page.page.on("websocket", lambda ws: sockets.append(ws.url))
    page.open(session, "auth=token")
    page.send("Hello with a token")
    page.wait_text_longer_than(10)
    proxy.cut(0.5)
    page.wait_status("resumed")
    page.wait_run_status("finished")

    assert minted == [200, 200], "a fresh token for each connection"
    assert len(sockets) == 2 and all("token=" in url for url in sockets)
    assert_page_shows_the_log(page, demo_site, session)


def test_a_jobs_live_progress_appears_in_its_place(demo_site, agent, proxy, new_page):
    page = new_page("laptop")
    session = page.new_session("Job")
    assert page.page.locator("#jobs").is_hidden()
    values = [
        {"job": "j-1", "label": "Diagnosis", "progress": 0.1, "status": "running"},
        {"job": "j-1", "progress": 0.4, "message": "learning curve"},
    ]
    events = [{"type": "CUSTOM", "data": {"name": "job.progress", "value": v}} for v in values]
    assert publish(demo_site, session, events)["type"] == "ack"
    bar = page.page.get_by_label("Progress of Diagnosis")
    page.page.wait_for_function("() => document.querySelector('#job-list progress')?.value === 0.4")
    assert page.page.locator("#jobs").is_visible()
    assert bar.evaluate("b => b.value") == 0.4
    assert "learning curve" in page.page.locator("#job-list").inner_text()
    page.screenshot("job-progress.png")


def test_answer_survives_a_server_restart_mid_stream(demo_site, agent, proxy, new_page):
    page = new_page("laptop")
    session = page.new_session("Server restart")
    page.send("Explain write-ahead logs, at length")
    partial = page.wait_text_longer_than(30)

    demo_site.restart()
    page.wait_status("resumed", timeout=30_000)
    page.wait_run_status("finished", timeout=60_000)

    assert_page_shows_the_log(page, demo_site, session)
    assert page.assistant_text() in ANSWERS, "the page's text is not the agent's full answer"
    assert page.assistant_text().startswith(partial)
    assert offsets_sent_in(page.subscribes(at_least=2))[-1] not in ("-1", "snapshot")
