"""The pure parts of usage, feedback and the dataset export (no Django)."""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.domain.dataset import (
    Exporter,
    Filters,
    conversation,
    luhn,
    parse_split,
    redact,
    split_of,
)
from sessions_app.domain.errors import BadEvent, BadRequest
from sessions_app.domain.events import validate_event
from sessions_app.domain.fold import fold
from sessions_app.domain.judgement import add_usage, feedback_event, feedback_value, validate_usage

pytestmark = pytest.mark.engine_independent

words = st.text(alphabet=string.ascii_letters + " ,!?", max_size=40)
local = st.text(alphabet=string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=12)
domain = st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=10)


@given(
    before=words, after=words, user=local, host=domain, tld=st.sampled_from(["com", "io", "co.uk"])
)
def test_a_planted_email_address_is_redacted(before, after, user, host, tld):
    address = f"{user.strip('.')}x@{host}.{tld}"
    text, counts = redact(f"{before} {address} {after}")
    assert address not in text and "[EMAIL]" in text and counts["email"] == 1


def card_number(prefix: str) -> str:
    digits = prefix + "0"
    for check in "0123456789":
        if luhn(prefix + check):
            return prefix + check
    return digits


@given(
    body=st.text(alphabet=string.digits, min_size=15, max_size=15),
    sep=st.sampled_from(["", " ", "-"]),
)
def test_a_card_number_that_passes_luhn_is_redacted(body, sep):
    number = card_number(body)
    written = sep.join(number[i : i + 4] for i in range(0, 16, 4))
    text, counts = redact(f"card {written} thanks")
    assert text == "card [CARD] thanks" and counts == {"card": 1}


@given(
    number=st.text(alphabet=string.digits, min_size=9, max_size=11),
    country=st.sampled_from(["+1 ", "+44 ", "+33 "]),
)
def test_a_phone_number_is_redacted(number, country):
    written = country + " ".join(number[i : i + 3] for i in range(0, len(number), 3))
    text, counts = redact(f"call {written} now")
    assert text == "call [PHONE] now" and counts == {"phone": 1}


@given(words)
def test_text_without_contacts_is_unchanged(text):
    assert redact(text) == (text, {})


def test_dates_and_plain_numbers_are_not_phone_numbers():
    text = "on 2026-12-06 order 1234567 cost 3.14159"
    assert redact(text) == (text, {})


@given(name=st.text(min_size=1, max_size=30), seed=st.integers(0, 2**32))
def test_the_split_is_fixed_by_name_and_seed_and_a_zero_fraction_is_never_chosen(name, seed):
    assert split_of(name, seed, (0.8, 0.2, 0.0)) == split_of(name, seed, (0.8, 0.2, 0.0)) != "test"
    assert split_of(name, seed, (1.0, 0.0, 0.0)) == "train"


def test_split_fractions_are_about_right_and_parsed_strictly():
    counts = {"train": 0, "dev": 0, "test": 0}
    for index in range(5000):
        counts[split_of(f"s{index}", 3, (0.8, 0.1, 0.1))] += 1
    assert 3800 < counts["train"] < 4200 and 350 < counts["dev"] < 650
    assert parse_split("0.7,0.2,0.1") == (0.7, 0.2, 0.1)
    for bad in ("0.5,0.5", "a,b,c", "0.9,0.2,0.1", "-0.1,1,0.1"):
        with pytest.raises(ValueError):
            parse_split(bad)


def session(*answers: tuple[str, str, str], ratings=()):
    events = []
    for index, (question, answer, end) in enumerate(answers):
        run, user, bot = f"r{index}", f"u{index}", f"a{index}"
        events += [
            {"type": "TEXT_MESSAGE_START", "message": user, "data": {"role": "user"}},
            {"type": "TEXT_MESSAGE_CONTENT", "message": user, "data": {"delta": question}},
            {"type": "TEXT_MESSAGE_END", "message": user},
            {"type": "RUN_STARTED", "run": run, "agent": "bot"},
            {"type": "TEXT_MESSAGE_START", "message": bot, "run": run, "data": {"role": "assistant"}},
            {"type": "TEXT_MESSAGE_CONTENT", "message": bot, "run": run, "data": {"delta": answer}},
            {"type": "TEXT_MESSAGE_END", "message": bot, "run": run},
            {"type": end, "run": run, "data": {"message": "x"}},
        ]  # fmt: skip
    for time, (message, user, rating, correction) in enumerate(ratings):
        value = feedback_value(message, rating, None, correction)
        events.append({**feedback_event(value, user), "time": time})
    return fold(enumerate(events, 1))


def test_a_conversation_is_built_from_the_fold_with_each_users_latest_rating():
    state = session(("Q1", "A1", "RUN_FINISHED"), ("Q2", "A2", "RUN_ERROR"),
                    ratings=[("a0", "ana", "down", "better"), ("a0", "ana", "up", None)])  # fmt: skip
    assert state.messages["a0"].feedback["ana"]["rating"] == "up"
    found = conversation(state)
    assert found is not None and found.rating == "up"
    assert [m["content"] for m in found.messages] == ["Q1", "A1", "Q2", "A2"]
    finished = conversation(state, Filters(finished_only=True))
    assert finished is not None and [m["content"] for m in finished.messages] == ["Q1", "A1"]


def test_a_correction_replaces_a_rated_down_answer_only_when_asked():
    state = session(("Q", "wrong", "RUN_FINISHED"), ratings=[("a0", "bo", "down", "right")])
    plain = conversation(state)
    assert plain is not None and plain.rating == "down" and plain.messages[-1]["content"] == "wrong"
    fixed = conversation(state, Filters(corrections=True, min_rating="up"))
    assert fixed is not None and fixed.rating == "corrected"
    assert fixed.messages[-1]["content"] == "right"
    assert conversation(state, Filters(min_rating="none")) is None


def test_identical_conversations_are_kept_once_and_counted():
    exporter = Exporter((1.0, 0.0, 0.0))
    state = session(("Q", "A", "RUN_FINISHED"))
    assert exporter.take("one", "2026-01-01", conversation(state)) is not None
    assert exporter.take("two", "2026-01-02", conversation(state)) is None
    assert exporter.take("three", "2026-01-03", None) is None
    card = exporter.card()
    assert card["conversations"] == 1 and card["duplicates_dropped"] == 1
    assert card["sessions_left_out"] == 1 and card["date_range"]["first"] == "2026-01-01"


finite = st.floats(min_value=0, max_value=1e9, allow_nan=False)


@given(
    st.lists(
        st.fixed_dictionaries({"input_tokens": st.integers(0, 10**6), "cost": finite}), min_size=1
    )
)
def test_usage_reports_add_up(reports):
    total = None
    for report in reports:
        total = add_usage(total, validate_usage(report))
    assert total is not None and total["reports"] == len(reports)
    assert total["input_tokens"] == sum(r["input_tokens"] for r in reports)
    assert math.isclose(total["cost"], math.fsum(r["cost"] for r in reports), rel_tol=1e-9)


@pytest.mark.parametrize(
    "value",
    [{"cost": -0.01}, {"cost": math.inf}, {"cost": math.nan}, {"input_tokens": 2.5},
     {"input_tokens": True}, {"model": ""}, {"currency": "x" * 9}, {"what": 1}, [1]],
)  # fmt: skip
def test_bad_usage_is_refused(value):
    with pytest.raises(BadEvent):
        validate_usage(value)


def test_a_client_cannot_publish_feedback_and_usage_needs_its_run():
    forged = {"type": "CUSTOM", "data": {"name": "sessions.FEEDBACK", "value": {}}}
    with pytest.raises(BadEvent, match="feedback"):
        validate_event(forged)
    with pytest.raises(BadEvent, match="run"):
        validate_event({"type": "CUSTOM", "data": {"name": "sessions.USAGE", "value": {}}})
    with pytest.raises(BadRequest):
        feedback_value("a1", "sideways")
    with pytest.raises(BadRequest):
        feedback_value("a1", "up", comment="x" * 2001)


def test_the_openai_compatible_adapter_reads_the_usage_chunk_and_prices_it():
    from sessions_app.agents.adapters.openai_compat import ChunkMapping, LLMSettings, usage_report

    mapping = ChunkMapping()
    mapping.actions({"choices": [{"delta": {"content": "hi"}}]})
    mapping.actions({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 10}})
    priced = LLMSettings("http://x/v1", "m", input_price=0.5, output_price=2.0)
    report = usage_report(priced, mapping.usage, 120.0, 900.0)
    assert report == {"model": "m", "latency_ms": 900.0, "first_token_ms": 120.0,
                      "input_tokens": 1000, "output_tokens": 10, "cost": 0.00052,
                      "currency": "USD"}  # fmt: skip
    validate_usage(report)
    unpriced = usage_report(LLMSettings("http://x/v1", "m"), {"prompt_tokens": -1}, None, 5.0)
    assert unpriced == {"model": "m", "latency_ms": 5.0}
