"""durable-sessions.js in a real browser, without a server: the page's WebSocket is a stand-in
the test drives frame by frame, so reconnects, duplicates and expired offsets happen on cue.

The fold must give what the server's fold gives (sessions_app/domain/fold.py): a page that
folds events itself and a page that asks for a snapshot must show the same conversation.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from sessions_app.domain.fold import fold
from tests.e2e.browser.fixtures import browser  # noqa: F401  (fixture)
from tests.e2e.servers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ORIGIN = "http://client.test"
MODULE = ROOT / "sessions_app" / "static" / "sessions_app" / "durable-sessions.js"

FAKE_SOCKET = """
window.sockets = [];
window.FakeSocket = class FakeSocket {
  constructor(url) {
    this.url = url; this.readyState = 0; this.sent = []; sockets.push(this);
    setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code = 1000) { this.drop(code); }
  drop(code = 1006) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose && this.onclose({ code }), 0);
  }
  serve(frame) { this.onmessage && this.onmessage({ data: JSON.stringify(frame) }); }
  hello() { this.serve({ type: 'hello', device: new URL(this.url).searchParams.get('device'), user: 'alice' }); }
};
window.until = async (check, ms = 3000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out: " + check);
    await new Promise((r) => setTimeout(r, 5));
  }
};
"""


@pytest.fixture
def page(browser):  # noqa: F811
    context = browser.new_context()
    tab = context.new_page()
    tab.route(f"{ORIGIN}/", lambda route: route.fulfill(body="<!doctype html><title>t</title>"))
    tab.route(
        f"{ORIGIN}/durable-sessions.js",
        lambda route: route.fulfill(
            body=MODULE.read_text(), headers={"content-type": "text/javascript"}
        ),
    )
    tab.goto(f"{ORIGIN}/")
    tab.add_script_tag(content=FAKE_SOCKET)
    yield tab
    context.close()


def offset(n: int) -> str:
    return f"0000000000000000_{n:016d}"


def run_js(page, body: str, arg: Any = None) -> Any:
    """Run ``body`` (an async function body with ``lib`` and ``arg``) in the page."""
    return page.evaluate(
        "async ([body, arg]) => { const lib = await import('/durable-sessions.js');"
        " return await (new Function('lib', 'arg', 'return (async () => {' + body + '})()'))(lib, arg); }",
        [body, arg],
    )


# --- the fold mirrors the server's ---------------------------------------------------------


def random_events(rng: random.Random, count: int) -> list[dict[str, Any]]:
    runs, messages = ["r1", "r2", "r3"], ["m1", "m2", "m3", "m4"]
    values = [1, "x", [1, 2], {"k": "v"}, None]

    def patch_op() -> dict[str, Any]:
        op = rng.choice(["add", "remove", "replace", "move", "copy", "test", "bogus"])
        path = rng.choice(["", "/a", "/a/0", "/a/-", "/b", "/b/k", "/a/01", "/c~1d", "x"])
        return {"op": op, "path": path, "from": rng.choice(["/a", "/b", "/zz"]),
                "value": rng.choice(values)}  # fmt: skip

    def event() -> dict[str, Any]:
        kind = rng.choice(
            ["RUN_STARTED", "RUN_FINISHED", "RUN_ERROR", "TEXT_MESSAGE_START",
             "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK", "TEXT_MESSAGE_END", "CANCEL",
             "STATE_SNAPSHOT", "STATE_DELTA", "CUSTOM", "STEER"]
        )  # fmt: skip
        e: dict[str, Any] = {"type": kind}
        if rng.random() < 0.9:
            e["run"] = rng.choice(runs)
        if rng.random() < 0.9:
            e["message"] = rng.choice(messages)
        if rng.random() < 0.3:
            e["agent"] = rng.choice(["writer", "critic"])
        data: dict[str, Any] = {}
        if kind == "RUN_STARTED" and rng.random() < 0.5:
            data["parentRunId"] = rng.choice([*runs, 7])
        elif kind == "RUN_FINISHED":
            data["outcome"] = rng.choice(["success", "cancelled", None])
            if rng.random() < 0.5:
                data["reason"] = rng.choice(["timeout", 3])
        elif kind == "RUN_ERROR":
            data["code"] = rng.choice(["cancelled", "boom"])
            data["message"] = rng.choice(["it broke", None, 4])
        elif kind in ("TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK"):
            data["role"] = rng.choice(["assistant", "user", None])
            data["delta"] = rng.choice(["Hel", "lo ", "wörld ", 5])
        elif kind == "STATE_SNAPSHOT":
            data["snapshot"] = rng.choice([{"a": [1, 2], "b": {"k": "v"}}, {"a": []}, None])
        elif kind == "STATE_DELTA":
            data["delta"] = rng.choice([[patch_op() for _ in range(rng.randint(1, 3))], {}, "x"])
        if rng.random() < 0.95:
            e["data"] = data if rng.random() < 0.97 else ["not", "an", "object"]
        return e

    return [event() for _ in range(count)]


def server_fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    return fold(enumerate(events, start=1)).as_dict()


SERVER_FIELDS = {
    "messages": ("id", "role", "run", "agent", "status", "text"),
    "runs": ("id", "status", "parent", "agent", "outcome", "error", "reason"),
}


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [{k: m[k] for k in SERVER_FIELDS["messages"]} for m in state["messages"]],
        "runs": [{k: r[k] for k in SERVER_FIELDS["runs"]} for r in state["runs"]],
        "state": state["state"],
    }


def test_the_browser_fold_gives_what_the_server_fold_gives(page):
    rng = random.Random(5)
    cases = [random_events(rng, rng.randint(1, 40)) for _ in range(400)]
    folded = run_js(
        page,
        """
        return arg.map((events) => {
          const state = lib.emptyState();
          events.forEach((e, i) => lib.applyEvent(state, {...e, offset: String(i + 1).padStart(4, '0')}));
          return lib.stateToJSON(state);
        });
        """,
        cases,
    )
    statuses = set()
    for events, js in zip(cases, folded, strict=True):
        expected = server_fold(events)
        assert comparable(js) == comparable(expected), json.dumps(events)
        statuses.update(r["status"] for r in expected["runs"])
        statuses.update(m["status"] for m in expected["messages"])
    # The cases reached every status of runs and messages.
    assert statuses >= {"running", "cancelling", "cancelled", "finished", "failed",
                        "streaming", "complete"}  # fmt: skip


def test_a_snapshot_and_the_events_it_folds_show_the_same_conversation(page):
    events = [
        {"type": "RUN_STARTED", "run": "r1"},
        {"type": "TEXT_MESSAGE_START", "run": "r1", "message": "m1"},
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "Hi "}},
        {"type": "CANCEL", "run": "r1"},
        {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "cancelled"}},
    ]
    from_snapshot = run_js(
        page,
        "return lib.stateToJSON(lib.stateFromSnapshot(arg, '5'));",
        server_fold(events),
    )
    assert comparable(from_snapshot) == comparable(server_fold(events))
    assert from_snapshot["messages"][0]["status"] == "cancelled"


# --- connection, resume, duplicates ----------------------------------------------------------

CONNECT = """
  const statuses = [];
  const client = new lib.SessionsClient({ WebSocket: FakeSocket, url: 'ws://client.test/ws/sessions/',
                                          backoff: { initial: 20, max: 80, factor: 2 } });
  client.addEventListener('status', (e) => statuses.push(e.detail.status));
  const view = client.subscribe('chat');
  await until(() => sockets.length === 1 && sockets[0].readyState === 1);
  let ws = sockets[0];
  ws.hello();
  const subscribe = () => ws.sent.filter((f) => f.op === 'subscribe').at(-1);
  const delta = (n, text) => ({ offset: arg.offsets[n], type: 'TEXT_MESSAGE_CONTENT',
                                 message: 'm1', run: 'r1', data: { delta: text } });
"""


def test_duplicates_are_dropped_and_a_reconnect_resumes_after_the_last_offset(page):
    result = run_js(
        page,
        CONNECT
        + """
        const first = subscribe();
        ws.serve({ type: 'snapshot', id: first.id, session: 'chat', offset: arg.offsets[0],
                   state: { messages: [], runs: [{ id: 'r1', status: 'running', parent: null,
                            agent: null, outcome: null, error: null }], state: null } });
        ws.serve({ type: 'caught_up', id: first.id, session: 'chat', offset: arg.offsets[0] });
        ws.serve({ type: 'events', session: 'chat', events: [delta(1, 'a'), delta(2, 'b'), delta(3, 'c')] });
        ws.serve({ type: 'events', session: 'chat', events: [delta(2, 'b'), delta(3, 'c'), delta(4, 'd')] });
        ws.drop();                          // the network dies
        await until(() => sockets.length === 2 && sockets[1].readyState === 1);
        ws = sockets[1];
        ws.hello();
        const again = subscribe();
        ws.serve({ type: 'events', session: 'chat', events: [delta(4, 'd'), delta(5, 'e')] });
        ws.serve({ type: 'caught_up', id: again.id, session: 'chat', offset: arg.offsets[5] });
        await until(() => client.status === 'resumed');
        return { first: first.after, again: again.after, text: view.state.messages[0].text,
                 dropped: view.duplicatesDropped, statuses, url: sockets[1].url,
                 stored: JSON.parse(sessionStorage.getItem('durable-sessions:session:chat') || 'null') };
        """,
        {"offsets": [offset(n) for n in range(10, 16)]},
    )
    assert result["first"] == "snapshot"
    assert result["again"] == offset(14), "did not resume after the last offset it folded"
    assert result["text"] == "abcde"
    assert result["dropped"] == 3
    assert result["statuses"] == ["connecting", "connected", "reconnecting", "resumed"]
    assert "device=d-" in result["url"]


def test_a_new_client_in_the_same_tab_resumes_from_storage(page):
    stored = run_js(
        page,
        CONNECT
        + """
        const first = subscribe();
        ws.serve({ type: 'caught_up', id: first.id, session: 'chat', offset: arg.offsets[0] });
        ws.serve({ type: 'events', session: 'chat', events: [
          { offset: arg.offsets[1], type: 'TEXT_MESSAGE_START', message: 'm1', data: { role: 'assistant' } },
          delta(2, 'Hello')] });
        client.close();                     // what a reload does (pagehide flushes the same way)
        const reloaded = new lib.SessionsClient({ WebSocket: FakeSocket, url: 'ws://client.test/ws/sessions/' });
        const view2 = reloaded.subscribe('chat');
        const before = view2.state.messages.map((m) => m.text);
        await until(() => sockets.length === 2 && sockets[1].readyState === 1);
        sockets[1].hello();
        const sub = sockets[1].sent.find((f) => f.op === 'subscribe');
        return { before, after: sub.after, device: reloaded.device === client.device };
        """,
        {"offsets": [offset(n) for n in range(1, 4)]},
    )
    assert stored["before"] == ["Hello"], "the reloaded page lost what it had shown"
    assert stored["after"] == offset(3)
    assert stored["device"], "the same tab should keep its device id"


def test_an_expired_offset_falls_back_to_the_snapshot(page):
    result = run_js(
        page,
        CONNECT
        + """
        const first = subscribe();
        ws.serve({ type: 'caught_up', id: first.id, session: 'chat', offset: arg.offsets[0] });
        ws.serve({ type: 'events', session: 'chat', events: [delta(1, 'old')] });
        ws.drop();
        await until(() => sockets.length === 2 && sockets[1].readyState === 1);
        ws = sockets[1];
        ws.hello();
        const resume = subscribe();
        ws.serve({ type: 'error', id: resume.id, code: 'offset_expired', session: 'chat',
                   earliest: arg.offsets[3], resume: 'snapshot' });
        await until(() => subscribe().id !== resume.id);
        const retry = subscribe();
        ws.serve({ type: 'snapshot', id: retry.id, session: 'chat', offset: arg.offsets[4],
                   state: { messages: [{ id: 'm1', role: 'assistant', run: null, agent: null,
                            status: 'complete', text: 'compacted' }], runs: [], state: null } });
        ws.serve({ type: 'caught_up', id: retry.id, session: 'chat', offset: arg.offsets[4] });
        await until(() => client.status === 'resumed');
        return { resume: resume.after, retry: retry.after, text: view.state.messages.map((m) => m.text),
                 offset: view.offset };
        """,
        {"offsets": [offset(n) for n in range(1, 6)]},
    )
    assert result["resume"] == offset(2)
    assert result["retry"] == "snapshot"
    assert result["text"] == ["compacted"]
    assert result["offset"] == offset(5)


def test_reconnect_delays_grow_exponentially_with_jitter_up_to_a_cap(page):
    delays = run_js(
        page,
        """
        const opts = { initial: 250, max: 8000, factor: 2 };
        return [0, 1, 2, 3, 4, 5, 6, 10].map((a) => [lib.backoffDelay(a, opts, () => 0),
                                                      lib.backoffDelay(a, opts, () => 0.999)]);
        """,
    )
    lows = [low for low, _ in delays]
    highs = [high for _, high in delays]
    assert lows == [125, 250, 500, 1000, 2000, 4000, 4000, 4000]
    assert all(low < high <= 2 * low for low, high in delays)
    assert highs[-1] < 8000


def test_operations_send_the_protocol_frames_and_settle_on_the_reply(page):
    result = run_js(
        page,
        CONNECT
        + """
        const sub = subscribe();
        ws.serve({ type: 'caught_up', id: sub.id, session: 'chat', offset: '-1' });
        const calls = [view.sendMessage('hi'), view.cancel(), view.cancel('r1'), view.steer('r1', 'shorter'),
                       view.interrupt('stop that', 'r1')];
        const frames = ws.sent.filter((f) => ['send_message', 'cancel', 'steer', 'interrupt'].includes(f.op));
        frames.slice(0, 4).forEach((f) => ws.serve({ type: 'ack', id: f.id, session: 'chat', offsets: [] }));
        ws.serve({ type: 'error', id: frames[4].id, code: 'run_ended', message: 'run r1 is finished' });
        const settled = await Promise.allSettled(calls);
        return { frames: frames.map(({ id, ...rest }) => rest),
                 settled: settled.map((s) => s.status === 'fulfilled' ? 'ack' : s.reason.code) };
        """,
    )
    assert result["frames"] == [
        {"op": "send_message", "session": "chat", "text": "hi"},
        {"op": "cancel", "session": "chat"},
        {"op": "cancel", "session": "chat", "run": "r1"},
        {"op": "steer", "session": "chat", "run": "r1", "text": "shorter"},
        {"op": "interrupt", "session": "chat", "text": "stop that", "run": "r1"},
    ]
    assert result["settled"] == ["ack", "ack", "ack", "ack", "run_ended"]


def test_a_token_provider_is_asked_on_every_connect(page):
    urls = run_js(
        page,
        """
        let n = 0;
        const client = new lib.SessionsClient({ WebSocket: FakeSocket, url: 'ws://client.test/ws/sessions/',
          token: async () => 'tok' + (++n), label: 'my phone', backoff: { initial: 10, max: 20, factor: 2 } });
        client.subscribe('chat');
        await until(() => sockets.length === 1 && sockets[0].readyState === 1);
        sockets[0].hello();
        sockets[0].drop(4401);             // the token expired while we were away
        await until(() => sockets.length === 2);
        return sockets.map((s) => new URL(s.url).searchParams.get('token') + ' ' + new URL(s.url).searchParams.get('label'));
        """,
    )
    assert urls == ["tok1 my phone", "tok2 my phone"]


def test_a_cookie_client_tries_its_cookie_again_when_its_login_ends(page):
    # A password changed in this browser ends the login the socket opened with; the browser
    # gets its new cookie a moment later, with the response. The client tries again on its
    # backoff: a close or two more with 4401 before a hello, then the new login, and the
    # subscriptions carry on. LOGIN_RETRIES closes in a row before any hello: logged out, the
    # client stops and says so.
    result = run_js(
        page,
        CONNECT
        + """
        ws.serve({ type: 'caught_up', id: subscribe().id, session: 'chat', offset: '-1' });
        const next = async (n) => { await until(() => sockets.length === n && sockets[n - 1].readyState === 1);
                                    return sockets[n - 1]; };
        ws.drop(4401);
        (await next(2)).drop(4401);         // the old cookie still: refused again
        ws = await next(3);
        ws.hello();                         // the new cookie: in
        const resubscribed = subscribe() !== undefined;
        ws.serve({ type: 'caught_up', id: subscribe().id, session: 'chat', offset: '-1' });
        ws.drop(4401);                      // later, a logout
        for (let n = 4; n < 4 + lib.LOGIN_RETRIES; n++) (await next(n)).drop(4401);
        await until(() => statuses.at(-1) === 'unauthenticated');
        await new Promise((r) => setTimeout(r, 200));   // longer than the backoff's cap (80 ms)
        return { sockets: sockets.length, retries: lib.LOGIN_RETRIES, resubscribed, statuses };
        """,
    )
    assert result["retries"] >= 2
    assert result["sockets"] == 3 + result["retries"] and result["resubscribed"]
    assert result["statuses"] == [
        "connecting", "connected", "reconnecting", "resumed", "reconnecting", "unauthenticated"
    ]  # fmt: skip


def test_the_stored_offset_keeps_up_with_a_long_stream(page):
    # A tab that crashes (no pagehide) mid-answer resumes from near where it was, not from
    # wherever the stream started.
    stored = run_js(
        page,
        CONNECT
        + """
        const sub = subscribe();
        ws.serve({ type: 'caught_up', id: sub.id, session: 'chat', offset: arg.offsets[0] });
        const seen = [];
        for (let n = 1; n < arg.offsets.length; n++) {
          ws.serve({ type: 'events', session: 'chat', events: [delta(n, 'x')] });
          await new Promise((r) => setTimeout(r, 20));
          const raw = sessionStorage.getItem('durable-sessions:session:chat');
          seen.push(raw ? JSON.parse(raw).offset : null);
        }
        return seen;
        """,
        {"offsets": [offset(n) for n in range(1, 40)]},
    )
    middle = stored[len(stored) // 2]
    assert middle is not None and middle >= offset(10), stored
