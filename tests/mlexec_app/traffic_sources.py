"""Traffic sources a test names in MLEXEC_APP["TRAFFIC_SOURCE"] (real functions, dotted paths)."""

from __future__ import annotations

from mlexec_app.methodology.cost import Traffic

NOT_A_FUNCTION = 42

# A million calls a month at one cent each, 700 tokens in and 300 out; 42 rated conversations.
SUPPORT_BOT = Traffic(
    calls_per_month=1_000_000,
    mean_input_tokens=700,
    mean_output_tokens=300,
    api_cost_per_call=0.01,
    rated_conversations=42,
)


def steady(agent: str) -> Traffic | None:
    return SUPPORT_BOT if agent == "support-bot" else None


def broken(agent: str) -> Traffic | None:
    raise RuntimeError("the metrics database is down")


def nonsense(agent: str) -> object:
    return {"calls_per_month": "lots"}


def negative(agent: str) -> Traffic:
    return Traffic(calls_per_month=-5)
