"""The start-a-search form of the project page and the admin: one form, one service call.

Both pages post it (session + CSRF) and call :func:`mlexec_app.jobs.start_search`, the service
behind ``POST /projects/{ref}/search-jobs``; what the service refuses (``409 not_in_plan``, a
dataset the project may not name) comes back as a message for the page to show.
"""

from __future__ import annotations

from typing import Any

from django import forms

from mlexec_app import jobs
from mlexec_app.exceptions import MlexecError
from mlexec_app.models import DiagnosticJob, Project


class SearchForm(forms.Form):
    trials = forms.IntegerField(
        initial=20, min_value=jobs.SEARCH_TRIALS[0], max_value=jobs.SEARCH_TRIALS[1]
    )
    time_budget = forms.FloatField(
        initial=60.0, min_value=jobs.SEARCH_SECONDS[0], max_value=jobs.SEARCH_SECONDS[1],
        label="Time budget (s)",
    )  # fmt: skip


def start_from_post(project: Project, data: Any, user: Any) -> tuple[DiagnosticJob | None, str]:
    """Start the search a posted :class:`SearchForm` asks for: ``(job, "")`` or ``(None, why)``."""
    form = SearchForm(data)
    if not form.is_valid():
        errors = "; ".join(
            f"{name}: {' '.join(str(m) for m in e)}" for name, e in form.errors.items()
        )
        return None, f"The search was not started: {errors}"
    try:
        job = jobs.start_search(
            project, trials=form.cleaned_data["trials"],
            timeout=form.cleaned_data["time_budget"], user=user,
        )  # fmt: skip
    except MlexecError as exc:
        return None, f"The search was not started ({exc.code}): {exc.message}"
    return job, ""


def offered(plan: dict[str, Any]) -> bool:
    """Whether a page offers the button: the plan's next step (a plan payload) is a search's."""
    step = plan.get("next") or {}
    return step.get("kind") == "hyperparameters"
