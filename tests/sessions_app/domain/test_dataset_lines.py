"""The export writes its lines with orjson (faster); a re-export must give the same bytes as
the standard library's compact JSON, whatever the text (accents, emoji, quotes, controls)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.domain.dataset import Conversation, Exporter

pytestmark = pytest.mark.engine_independent

texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1)  # no lone surrogates


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), texts), min_size=1))
def test_orjson_lines_are_the_standard_librarys_bytes(pairs):
    messages = [{"role": role, "content": text} for role, text in pairs]
    found = Conversation(messages, "unrated")

    def keep(text):
        return text, {}

    plain = Exporter((1.0, 0.0, 0.0), redactor=keep).take("s", "2026-01-01", found)
    fast = Exporter((1.0, 0.0, 0.0), redactor=keep, encode=orjson.dumps).take(
        "s", "2026-01-01", found
    )
    assert plain == fast
    assert json.loads(fast[1]) == {"messages": messages}
