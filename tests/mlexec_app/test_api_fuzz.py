"""Arbitrary JSON at the write endpoints: a 2xx, or a coded 4xx that wrote nothing.

``FUZZ_ML_EXAMPLES`` sets the examples per endpoint (50 in the suite; a deeper run, e.g. 1,000,
is `FUZZ_ML_EXAMPLES=1000 pytest tests/mlexec_app/test_api_fuzz.py`).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlexec_app.models import ErrorAnalysis, MetricPoint, Run

pytestmark = pytest.mark.django_db

SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=5)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(["train", "dev", "loss", "", "x" * 101])
POINT = st.fixed_dictionaries({"key": KEYS, "value": SCALARS}, optional={"step": SCALARS})
RUN_BODY = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=4)},
    optional={
        "metrics": st.dictionaries(KEYS, SCALARS, max_size=3),
        "history": st.lists(POINT, max_size=3),
        "status": st.sampled_from(["running", "finished", "exploded"]),
        "cost": SCALARS,
        "params": JSON,
    },
)
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_ML_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def counts():
    return Run.objects.count(), MetricPoint.objects.count(), ErrorAnalysis.objects.count()


def check(response, before):
    assert response.status_code < 500
    if response.status_code >= 400:
        assert isinstance(response.json()["code"], str)
        assert counts() == before


@FUZZ
@given(body=RUN_BODY | JSON)
def test_create_run_with_arbitrary_json(api, project, body):
    before = counts()
    check(api.post(f"/projects/{project.slug}/runs", body), before)


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {}, optional={"params": JSON, "metrics": st.lists(POINT, max_size=4)}
    )
    | JSON
)
def test_log_batch_with_arbitrary_json(api, project, body):
    run = Run.objects.filter(name="target").first() or Run.objects.create(
        project=project, name="target", params={"lr": 1}
    )
    before = counts()
    check(api.post(f"/runs/{run.pk}/log-batch", body), before)


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {
            "categories": st.dictionaries(st.text(max_size=4), SCALARS, max_size=3),
            "sample_size": SCALARS,
        }
    )
    | JSON
)
def test_error_analysis_with_arbitrary_json(api, project, body):
    before = counts()
    check(api.post(f"/projects/{project.slug}/error-analyses", body), before)
