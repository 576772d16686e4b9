"""System checks of MLEXEC_APP, and settings that change the engine's behaviour."""

from __future__ import annotations

import pytest

from mlexec_app import services
from mlexec_app.checks import check_settings


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ({}, []),
        ({"MATERIALITY": 0.01, "CONFIDENCE": 0.9, "MIN_DEV_SIZE": 30, "MAX_BATCH": 10}, []),
        ([1, 2], ["mlexec_app.E001"]),
        ({"MATERALITY": 0.01}, ["mlexec_app.E002"]),
        ({"MATERIALITY": 2}, ["mlexec_app.E003"]),
        ({"CONFIDENCE": 0.2}, ["mlexec_app.E004"]),
        ({"MIN_DEV_SIZE": 0}, ["mlexec_app.E005"]),
        ({"MAX_BATCH": "many"}, ["mlexec_app.E005"]),
        ({"MAX_RUN_BYTES": 0}, ["mlexec_app.E005"]),
        ({"JOB_DATASETS": ["digits"]}, ["mlexec_app.E006"]),
        ({"JOB_MODEL_FACTORIES": {"f": len}}, ["mlexec_app.E006"]),
        ({"JOB_TIME_LIMIT": 0}, ["mlexec_app.E007"]),
        ({"JOB_MEMORY_LIMIT_MB": 1.5}, ["mlexec_app.E007"]),
        ({"DATA_ROOT": 3}, ["mlexec_app.E007"]),
        ({"MAX_OPEN_JOBS": -1}, ["mlexec_app.E007"]),
        ({"MAX_OPEN_JOBS": True}, ["mlexec_app.E007"]),
        ({"DATA_ROOT": "/srv/data", "JOB_TIME_LIMIT": 60, "JOB_MEMORY_LIMIT_MB": 0}, []),
    ],
)
def test_settings_checks(settings, value, ids):
    settings.MLEXEC_APP = value
    errors = check_settings()
    assert [e.id for e in errors] == ids
    assert all(e.hint for e in errors)


@pytest.mark.django_db
def test_min_dev_size_setting_changes_what_is_decided(settings, project):
    services.record_assessment(project, train_size=50_000, train_dev_size=5000, dev_size=5000)
    services.record_run(project, name="r", metrics={"train": 0.01, "train_dev": 0.015, "dev": 0.2})
    assert services.diagnose_project(project).diagnosis.confidence == "decided"
    settings.MLEXEC_APP = {"MIN_DEV_SIZE": 10_000}
    assert services.diagnose_project(project).diagnosis.confidence == "inconclusive"
