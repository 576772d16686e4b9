"""Create the demo login and the demo ML project (idempotent) and print the login.

The demo project is scikit-learn's digits with known label noise (180 of 1,797 labels flipped
to another class, as in bench/mlexec_label_issues.py), a baseline run, and a full diagnosis
queued for the job worker (`make run` starts `manage.py db_worker`), so a newcomer sees the
report, the learning curve, the suspected labels with their images and the plan within about
a minute. Running it again changes nothing that is already there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

DEMO_SLUG = "digits-demo"
DEMO_FILE = "digits-noisy.npz"
BASELINE_ID = "demo:baseline"
FLIPS = 180


class Command(BaseCommand):
    help = (
        "Create the demo superuser (DEMO_USER / DEMO_PASSWORD, default demo / demo) and the "
        "demo ML project (noisy digits, a baseline run, a queued diagnosis)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--no-ml-demo", action="store_true", help="Only the login, no demo ML project."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_USER", "demo")
        password = os.environ.get("DEMO_PASSWORD", "demo")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        self.stdout.write(
            self.style.SUCCESS(f"Demo login: user {username!r}, password {password!r}")
        )
        if options["no_ml_demo"]:
            return
        try:
            project, job = ml_demo(user)
        except ImportError as exc:  # an install without the mlexec extra
            self.stdout.write(f"No demo ML project: {exc} (install the mlexec extra).")
            return
        self.stdout.write(
            f"Demo ML project: /mlexec/projects/{project.slug}/ "
            f"(diagnostic job #{job.pk} {job.status})"
        )


def noisy_digits(seed: int = 0) -> tuple[Any, np.ndarray]:
    """The digits with ``FLIPS`` labels moved to another class; returns (dataset, flipped rows)."""
    from mlexec_app.diagnostics.data import load_demo

    data = load_demo("digits")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.y), FLIPS, replace=False)
    noisy = data.y.copy()
    noisy[rows] = (noisy[rows] + rng.integers(1, 10, FLIPS)) % 10
    return data.with_labels(noisy), np.sort(rows)


def demo_file(project: Any) -> tuple[Path, str, bool]:
    """Where the noisy digits live and how the job names them: in the project's data folder
    when DATA_ROOT is set (an allowed file), else in the user's cache (the site owner's job)."""
    from mlexec_app import jobs

    folder = jobs.data_folder(project)
    if folder is not None:
        return folder / DEMO_FILE, DEMO_FILE, False
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlexec-demo"
    return cache / DEMO_FILE, str(cache / DEMO_FILE), True


def ml_demo(user: Any) -> tuple[Any, Any]:
    """The demo project, its baseline run and its diagnosis, each made once."""
    from mlexec_app import jobs, services
    from mlexec_app.models import Project

    with transaction.atomic():
        project = Project.objects.filter(owner=user, slug=DEMO_SLUG).first()
        if project is None:
            project = services.create_project(
                user,
                name="Handwritten digits (demo, noisy labels)",
                slug=DEMO_SLUG,
                problem_statement=(
                    "Read handwritten digits from 8x8 scans. About 10% of the labels were "
                    "flipped on purpose: the diagnosis should find them."
                ),
                data_type="image",
                abstraction_layer="deep_learning",
                metric_name="accuracy",
                metric_direction="higher",
                target_value=0.97,
                human_level=0.995,
                bayes_proxy="a careful person reading clear digits",
            )
    path, dataset, trusted = demo_file(project)
    data, _ = noisy_digits()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.npz")
        np.savez_compressed(
            partial, X=data.X.reshape(-1, 8, 8), y=data.y, classes=np.array(data.classes)
        )
        partial.replace(path)  # a reader never sees half a file
    if not project.runs.filter(external_id=BASELINE_ID).exists():
        services.import_run(project, BASELINE_ID, **baseline_run(data))
    job = project.diagnostic_jobs.order_by("id").first()
    if job is None:
        job = jobs.start_job(project, dataset, user=user, trusted=trusted)
    return project, job


def baseline_run(data: Any) -> dict[str, Any]:
    """A quick first model (logistic regression, under a second): the run a newcomer brings."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from mlexec_app.diagnostics.baseline import split_rows

    rows = split_rows(data.y)
    X = data.X / 16.0
    # One BLAS thread, as the diagnostics train on one torch thread: on a 2-core machine with
    # other work running, OpenBLAS's second thread spin-waits and this fit took 6-8 s, not 0.06.
    with threadpool_limits(limits=1, user_api="blas"):
        model = LogisticRegression(max_iter=500).fit(X[rows["train"]], data.y[rows["train"]])
    accuracy = {
        split: round(float((model.predict(X[r]) == data.y[r]).mean()), 4)
        for split, r in rows.items()
    }
    return {
        "name": "Baseline: logistic regression on pixels",
        "params": {"model": "LogisticRegression", "max_iter": 500, "dataset": DEMO_FILE},
        "metrics": accuracy,
        "source": "demo",
        "notes": "Measured against the noisy labels, on the same splits as the diagnosis.",
    }
