"""Chat Completions chunks -> actions, and the coalescing every adapter's actions go through."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sessions_app.agents.adapters.actions import (
    Prices,
    Reasoning,
    ReasoningEnd,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolStart,
    Usage,
    coalesce,
    usage_report,
)
from sessions_app.agents.adapters.openai_compat import ChunkMapping

pytestmark = pytest.mark.engine_independent


def chunk(**delta):
    return {"choices": [{"index": 0, "delta": delta}]}


def mapped(chunks):
    mapping = ChunkMapping()
    return [a for c in chunks for a in mapping.actions(c)] + mapping.finish()


def test_reasoning_then_text_then_a_streamed_tool_call():
    actions = mapped([
        chunk(role="assistant"), chunk(reasoning_content="Greet"), chunk(reasoning=" back"),
        chunk(content="Hello"),
        chunk(tool_calls=[{"index": 0, "id": "t1", "function": {"name": "wave", "arguments": "{"}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": "}"}}]),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ])  # fmt: skip
    assert actions == [
        Reasoning("Greet"), Reasoning(" back"), ReasoningEnd(), Text("Hello"),
        ToolStart("t1", "wave"), ToolArgs("t1", "{"), ToolArgs("t1", "}"),
        TextEnd(), ToolEnd("t1"),
    ]  # fmt: skip


hostile = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


deltas = st.dictionaries(
    st.sampled_from(["content", "reasoning", "reasoning_content", "tool_calls"]), hostile
) | st.fixed_dictionaries({"tool_calls": st.lists(
    st.fixed_dictionaries({}, optional={"index": hostile, "id": hostile, "function": hostile}),
    max_size=3)})  # fmt: skip


@given(st.lists(hostile | st.builds(lambda d: {"choices": [{"delta": d}]}, hostile | deltas),
                max_size=8))  # fmt: skip
def test_any_json_from_the_endpoint_maps_without_crashing(chunks):
    for action in mapped(chunks):
        assert isinstance(getattr(action, "delta", ""), str)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=12))
def test_text_in_any_chunks_arrives_whole(pieces):
    actions = coalesce(mapped([chunk(content=p) for p in pieces]))
    assert "".join(a.delta for a in actions if isinstance(a, Text)) == "".join(pieces)
    assert actions[-1] == TextEnd()


stream = st.lists(
    st.one_of(
        st.builds(Reasoning, st.text(max_size=5), st.sampled_from(["", "c"])),
        st.builds(ToolArgs, st.sampled_from(["t1", "t2"]), st.text(max_size=5), st.just("")),
        st.builds(Text, st.text(max_size=5)),
    ),
    max_size=30,
)


@given(stream)
def test_coalescing_keeps_every_streams_text_and_its_order(actions):
    joined = coalesce(actions)

    def streams(items):
        out = {}
        for a in items:
            name = (type(a).__name__, a.key, getattr(a, "call_id", None))
            out[name] = out.get(name, "") + a.delta
        return out

    assert streams(joined) == streams(actions)
    assert len(joined) <= len(actions)
    for before, after in zip(joined, joined[1:], strict=False):
        mergeable = isinstance(before, Reasoning | ToolArgs) and type(before) is type(after)
        assert not (mergeable and before.key == after.key
                    and getattr(before, "call_id", None) == getattr(after, "call_id", None))  # fmt: skip


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**16), 10**16), st.floats(), st.text(max_size=300)
)
price = st.floats(allow_nan=True, allow_infinity=True)


@given(
    st.builds(Usage, model=junk, input_tokens=junk, output_tokens=junk),
    st.one_of(st.none(), st.builds(Prices, price, price, st.text(max_size=20))),
)
@example(Usage("m", 1, 1), Prices(1.0, 1.0, ""))  # an empty currency (CI found it)
def test_whatever_a_framework_reports_the_server_accepts_the_report(usage, prices):
    """A framework's odd counts or a site's odd prices never make the report (and so the
    run) fail: what is not valid is left out."""
    from sessions_app.domain.judgement import validate_usage

    report = usage_report(usage, prices, 1.5, 20.0)
    assert validate_usage(report) == report
    assert ("cost" in report) <= ("input_tokens" in report and "output_tokens" in report)


def test_prices_by_model_price_only_the_models_they_name():
    prices = {"big": Prices(1.0, 10.0, "EUR")}
    assert usage_report(Usage("big", 100, 20), prices)["cost"] == pytest.approx(300e-6)
    assert "cost" not in usage_report(Usage("small", 100, 20), prices)
    assert "cost" not in usage_report(Usage("big", 100, None), prices)  # a count is missing
