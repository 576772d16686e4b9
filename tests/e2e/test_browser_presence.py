"""durable-sessions.js on the coalesced presence frames (issue #25): a ``changes`` frame
(several joins and leaves at once) leaves the page showing the frame's ``devices``."""

from __future__ import annotations

import pytest

from tests.e2e.browser.fixtures import browser  # noqa: F401  (fixture)
from tests.e2e.test_browser_client import CONNECT, page, run_js  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_a_merged_presence_frame_shows_its_devices(page):  # noqa: F811
    shown = run_js(
        page,
        CONNECT
        + """
        const first = subscribe();
        ws.serve({ type: 'caught_up', id: first.id, session: 'chat', offset: arg.offset });
        await until(() => ws.sent.some((f) => f.op === 'presence'));
        const ask = ws.sent.find((f) => f.op === 'presence');
        const me = { id: 'd-me', user: 'alice', label: '' };
        const phone = { id: 'd-phone', user: 'alice', label: 'phone' };
        const tablet = { id: 'd-tablet', user: 'alice', label: 'tablet' };
        const laptop = { id: 'd-laptop', user: 'bob', label: '' };
        ws.serve({ type: 'presence', id: ask.id, session: 'chat', event: 'list', self: me,
                   devices: [me, phone] });
        const listed = view.state.presence.devices.map((d) => d.id);
        ws.serve({ type: 'presence', session: 'chat', event: 'changes', self: me,
                   devices: [me, tablet, laptop], joined: [tablet, laptop], left: [phone] });
        return { listed, self: view.state.presence.self.id,
                 devices: view.state.presence.devices.map((d) => d.id) };
        """,
        {"offset": "0000000000000000_0000000000000003"},
    )
    assert shown["listed"] == ["d-me", "d-phone"]
    assert shown["self"] == "d-me"
    assert shown["devices"] == ["d-me", "d-tablet", "d-laptop"]
