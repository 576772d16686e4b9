"""The demo site's traffic source: the runs an agent logs in sessions_app, with their usage
and ratings, become the measured inputs of the cost curve on its mlexec project's page."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from mlexec_app import services as mlexec
from sessions_app import log
from sessions_app import services as sessions
from sessions_app.models import Run, Session

pytestmark = pytest.mark.django_db(transaction=True)


def answered(owner, name, agent, usage):
    """A chat: one question, the agent's answer, the answer's usage report."""
    session = Session.objects.create(name=name, owner=owner)
    events = [
        {"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "u1", "data": {"delta": "Where is my order?"}},
        {"type": "TEXT_MESSAGE_END", "message": "u1"},
        {"type": "RUN_STARTED", "run": "r1", "agent": agent},
        {"type": "TEXT_MESSAGE_START", "message": "a1", "run": "r1",
         "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "a1", "run": "r1",
         "data": {"delta": "It ships tomorrow."}},
        {"type": "TEXT_MESSAGE_END", "message": "a1", "run": "r1"},
        {"type": "CUSTOM", "run": "r1", "data": {"name": "sessions.USAGE", "value": usage}},
        {"type": "RUN_FINISHED", "run": "r1"},
    ]  # fmt: skip
    log.append_sync(sessions.request(session.pk, events))
    return session


def test_logged_runs_with_usage_and_ratings_feed_the_projects_cost_curve():
    ana = get_user_model().objects.create_user("ana", password="pw")
    browser = Client()
    browser.force_login(ana)
    usages = [(600, 0.008), (800, 0.012), (700, 0.010)]
    for i, (tokens_in, cost) in enumerate(usages):
        usage = {"model": "m", "input_tokens": tokens_in, "output_tokens": 300, "cost": cost}
        answered(ana, f"chat-{i}", "support-bot", usage)
    for name, rating in (("chat-0", "up"), ("chat-1", "up"), ("chat-2", "down")):
        rated = browser.post(
            f"/api/sessions/{name}/feedback",
            json.dumps({"message": "a1", "rating": rating}),
            content_type="application/json",
        )
        assert rated.status_code == 200
    answered(ana, "other", "sales-bot", {"input_tokens": 9000, "cost": 5.0})  # another agent
    answered(ana, "old", "support-bot", {"input_tokens": 9000, "cost": 5.0})
    Run.objects.filter(session__name="old").update(started_at=timezone.now() - timedelta(days=40))

    cache.clear()  # the demo's source caches its answer for a minute
    project = mlexec.create_project(
        ana, name="Support bot", abstraction_layer="llm_prompting", agent="support-bot"
    )
    mlexec.save_cost_model(project, {
        "llm_price_per_token": 1e-6, "tokens_per_call": 50, "calls_per_month": 1,
        "fine_tune_cost": 500, "hosting_cost_per_month": 1, "small_model_cost_per_call": 0.002,
    })  # fmt: skip
    html = browser.get(f"/mlexec/projects/{project.slug}/").content.decode()
    assert 'data-inputs="measured"' in html
    # Three calls this month (not the 40-day-old one, not the other agent's); 700 tokens in,
    # 300 out and a cent each on average; two conversations rated up, one down.
    assert '<td class="calls">3</td>' in html and '<td class="rated">2</td>' in html
    assert "<td>700.0</td>" in html and "<td>300.0</td>" in html and "<td>0.010000</td>" in html
    # Each call saves 0.8 cents over the small model's 0.2: break-even at 125 calls a month.
    assert '<span class="mlexec-break-even">125 calls a month</span>' in html
    body = browser.get(f"/api/mlexec/projects/{project.slug}/cost-model").json()
    assert body["inputs"] == "measured" and body["traffic"]["calls_per_month"] == 3
    assert body["savings_per_month"] == pytest.approx(3 * 0.008 - 1)
