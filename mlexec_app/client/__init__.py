"""Tracking client for mlexec_app: log runs from a training script over the REST API.

Needs only httpx (``pip install "django-ai-stack[client]"``); imports without Django.
See docs/mlexec/tracking.md.
"""

from mlexec_app.client.tracker import (
    Run,
    Tracker,
    TrackingError,
    TrackingRejected,
    Unreachable,
)

__all__ = ["Run", "Tracker", "TrackingError", "TrackingRejected", "Unreachable"]
