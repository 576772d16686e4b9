"""``manage.py mlexec diagnose`` and ``manage.py mlexec import-runs``."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mlexec_app import services
from mlexec_app.models import MetricPoint, Run

pytestmark = pytest.mark.django_db


def mlexec(*args):
    out = StringIO()
    call_command("mlexec", *args, stdout=out)
    return out.getvalue()


def test_diagnose_prints_a_readable_report(sized_project):
    services.record_run(
        sized_project, name="baseline", metrics={"train": 0.01, "train_dev": 0.015, "dev": 0.10}
    )
    text = mlexec("diagnose", sized_project.slug)
    assert "Dominant problem: data mismatch (decided)" in text
    assert "train-dev" in text and "(n=10,000)" in text
    assert "1. Make the training data more like the dev data" in text
    assert text == mlexec("diagnose", str(sized_project.pk))


def test_diagnose_json_is_the_api_payload(sized_project):
    services.record_run(sized_project, name="b", metrics={"train": 0.08, "dev": 0.10})
    payload = json.loads(mlexec("diagnose", sized_project.slug, "--json"))
    assert payload["dominant"] == "avoidable_bias"


def test_diagnose_an_unknown_project_fails_clearly(db):
    with pytest.raises(CommandError, match="No project 'nope'"):
        mlexec("diagnose", "nope")


def test_without_a_subcommand_the_command_lists_them(db):
    with pytest.raises(CommandError, match="create-api-key, diagnose, import-mlflow, import-runs"):
        mlexec()


def test_import_runs_from_csv(project, tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(
        "name,status,param.lr,param.optimizer,train,dev,f1,cost\n"
        "small,finished,0.001,adam,0.08,0.10,0.7,1.5\n"
        "large,failed,0.0003,sgd,0.05,,,\n"
    )
    assert "Imported 2 run(s)" in mlexec("import-runs", project.slug, str(path))
    small, large = Run.objects.order_by("id")
    assert small.params == {"lr": 0.001, "optimizer": "adam"}
    assert (small.train, small.dev, small.metrics["f1"], small.cost) == (0.08, 0.10, 0.7, 1.5)
    assert small.source == "import"
    assert (large.status, large.dev) == ("failed", None)


def test_import_runs_from_json_with_history(project, tmp_path):
    path = tmp_path / "runs.json"
    path.write_text(
        json.dumps(
            {
                "runs": [
                    {
                        "name": "a",
                        "metrics": {"dev": 0.2},
                        "history": [
                            {"key": "dev", "value": 0.3, "step": 0},
                            {"key": "dev", "value": 0.2, "step": 1},
                        ],
                    },
                ]
            }
        )
    )
    mlexec("import-runs", project.slug, str(path))
    assert Run.objects.get().dev == 0.2
    assert MetricPoint.objects.count() == 2


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("runs.csv", "name,dev\nok,0.1\nbad,1.5\n", "Run 2 \\(bad\\).*\\[0, 1\\]"),
        ("runs.csv", "name,dev\nok,0.1\nbad,high\n", "line 3, column 'dev'"),
        ("runs.json", '[{"name": "ok"}, {"nme": "typo"}]', "Run 2: needs a name"),
        ("runs.json", '{"not": "runs"}', "expected a list of runs"),
        ("runs.txt", "whatever", "use a .csv or a .json"),
    ],
)
def test_a_bad_file_imports_nothing(project, tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        mlexec("import-runs", project.slug, str(path))
    assert Run.objects.count() == 0


def test_dry_run_checks_and_writes_nothing(project, tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("name,dev\na,0.1\nb,0.2\n")
    assert "2 run(s) are valid" in mlexec("import-runs", project.slug, str(path), "--dry-run")
    assert Run.objects.count() == 0


def test_create_api_key_prints_a_working_key_once(user, project):
    from mlexec_app import keys
    from mlexec_app.models import ApiKey

    raw = mlexec("create-api-key", user.username, "--project", project.slug).strip()
    key = keys.authenticate(raw)
    assert key is not None and list(key.projects.all()) == [project]
    assert raw not in ApiKey.objects.get().hashed_key


def test_create_api_key_refuses_someone_elses_project(user, other_user):
    theirs = services.create_project(other_user, name="Theirs")
    with pytest.raises(CommandError, match="No project"):
        mlexec("create-api-key", user.username, "--project", theirs.slug)
