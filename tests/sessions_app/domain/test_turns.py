"""The pure rules of turns: policies, double texting, what a run's end does to its turn."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.domain.errors import BadRequest
from sessions_app.domain.turns import (
    Busy,
    OpenTurn,
    Policy,
    TurnState,
    after_run,
    conversation,
    on_message,
    run_id,
)

pytestmark = pytest.mark.engine_independent

DEFAULT = Policy()
RUNNING = OpenTurn(7, TurnState.CLAIMED, "turn-7-1")
CLAIMED_NOT_STARTED = OpenTurn(7, TurnState.CLAIMED, None)
QUEUED = OpenTurn(7, TurnState.QUEUED, None)


def test_an_idle_session_makes_a_turn_whatever_its_policy():
    for on_busy in ("queue", "steer", "interrupt", "reject"):
        decision = on_message(Policy(on_busy=on_busy), None)
        assert decision.create and not decision.steer_run and not decision.cancel_run


def test_queue_makes_another_turn_behind_the_running_one():
    decision = on_message(Policy(on_busy="queue"), RUNNING)
    assert decision.create and decision.cancel_run is None and decision.steer_run is None


def test_steer_steers_the_running_run_and_makes_no_turn():
    decision = on_message(Policy(on_busy="steer"), RUNNING)
    assert not decision.create and decision.steer_run == "turn-7-1"


def test_steer_before_the_answer_started_folds_the_message_into_the_waiting_turn():
    for busy in (QUEUED, CLAIMED_NOT_STARTED):
        decision = on_message(Policy(on_busy="steer"), busy)
        assert not decision.create and decision.steer_run is None


def test_interrupt_cancels_the_running_run_and_makes_a_turn():
    decision = on_message(Policy(on_busy="interrupt"), RUNNING)
    assert decision.create and decision.cancel_run == "turn-7-1"


def test_interrupt_supersedes_a_turn_still_queued():
    decision = on_message(Policy(on_busy="interrupt"), QUEUED)
    assert decision.create and decision.abandon == 7 and decision.cancel_run is None


def test_reject_refuses_the_message_with_busy():
    with pytest.raises(Busy) as refused:
        on_message(Policy(on_busy="reject"), RUNNING)
    assert refused.value.code == "busy" and refused.value.status == 409


def test_a_lost_agent_offers_the_turn_again_until_the_attempts_run_out():
    assert after_run("failed", "agent_lost", 1, 3) is TurnState.QUEUED
    assert after_run("failed", "agent_lost", 2, 3) is TurnState.QUEUED
    assert after_run("failed", "agent_lost", 3, 3) is TurnState.FAILED


def test_a_handler_error_fails_the_turn_and_an_answer_or_a_cancel_ends_it():
    assert after_run("failed", "internal", 1, 3) is TurnState.FAILED
    assert after_run("failed", None, 1, 3) is TurnState.FAILED
    assert after_run("finished", None, 1, 3) is TurnState.DONE
    assert after_run("cancelled", None, 1, 3) is TurnState.DONE


def test_each_attempt_answers_in_its_own_run():
    assert run_id(5, 1) == "turn-5-1" and run_id(5, 2) == "turn-5-2"


def test_policy_parses_a_session_s_metadata_over_the_site_default():
    policy = Policy.parse({"on_busy": "steer", "agents": ["critic"]}, DEFAULT)
    assert policy == Policy("assistant", frozenset({"critic"}), "steer")
    assert Policy.parse(None, DEFAULT) is DEFAULT
    assert Policy.parse({"agent": None}, DEFAULT).agent is None


@pytest.mark.parametrize(
    "raw",
    [
        "queue",
        {"on_busy": "later"},
        {"agent": ""},
        {"agent": "../etc"},
        {"agents": "critic"},
        {"agents": [1]},
        {"colour": "red"},
    ],
)
def test_a_bad_policy_is_refused_with_the_reason(raw):
    with pytest.raises(BadRequest):
        Policy.parse(raw, DEFAULT)


def test_a_mention_routes_only_to_an_allowed_agent():
    policy = Policy("assistant", frozenset({"critic"}))
    assert policy.route("@critic is this sound?") == "critic"
    assert policy.route("  @critic hello") == "critic"
    assert policy.route("@stranger hello") == "assistant"
    assert policy.route("mail me at a@critic.org") == "assistant"
    assert Policy(None).route("@critic hi") is None


@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=50)),
        min_size=1,
        max_size=30,
    ),
    st.integers(min_value=1, max_value=200),
)
def test_the_conversation_keeps_the_newest_messages_within_the_bound(messages, bound):
    raw = [{"role": role, "content": text} for role, text in messages]
    kept = conversation(raw, bound)
    assert kept and kept[-1]["content"] == raw[-1]["content"][-bound:]  # the question is kept
    assert sum(len(m["content"]) for m in kept[:-1]) + len(kept[-1]["content"]) <= max(
        bound, len(kept[-1]["content"])
    )
    assert [m["content"] for m in kept[:-1]] == [
        m["content"] for m in raw[len(raw) - len(kept) : -1]
    ]
