"""Run a chosen set of diagnostics on one dataset and collect one JSON-able report.

This is the one entry point the job, the CLI and the benchmark call. It knows nothing of
Django models: :mod:`mlexec_app.jobs` stores the report and writes Run, ErrorAnalysis and
DataAssessment rows from it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mlexec_app.diagnostics import baseline as baseline_mod
from mlexec_app.diagnostics import label_issues as label_mod
from mlexec_app.diagnostics import learning_curve as curve_mod
from mlexec_app.diagnostics import sanity, slices
from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.exceptions import DiagnosticsError
from mlexec_app.diagnostics.names import ALL, FULL
from mlexec_app.diagnostics.networks import ModelSpec
from mlexec_app.diagnostics.progress import Progress
from mlexec_app.diagnostics.training import TrainConfig

#: Suspected label errors drawn as images in a report (the rest are listed).
IMAGES_IN_REPORT = 24
#: Misclassified dev examples kept for the error-analysis page, and the features shown per
#: tabular row; images only while their pixels stay under the budget (the report stays small).
MISCLASSIFIED_IN_REPORT = 200
FEATURES_PER_ROW = 40
PIXEL_BUDGET = 200_000


@dataclass
class Plan:
    """What to run and with which model; plain data, stored in a job's parameters."""

    diagnostics: tuple[str, ...] = FULL
    target_error: float | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: The label-issue search has its own, more regularised, training settings.
    label_options: label_mod.LabelIssueOptions = field(default_factory=label_mod.LabelIssueOptions)
    label_train: TrainConfig = label_mod.DEFAULT_TRAIN
    #: The evidence model of the label-issue search: the batched, regularised MLP by default,
    #: whatever ``model`` is (a CNN or a factory would train 30 models one after another).
    label_model: ModelSpec = label_mod.DEFAULT_MODEL
    #: Labels a person corrected, ``(row, class name)``: the data is relabelled before any
    #: diagnostic runs (a rerun that measures what fixing them gained).
    relabel: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.diagnostics) - set(ALL))
        if unknown:
            raise DiagnosticsError(f"Unknown diagnostics {unknown}; choose from {', '.join(ALL)}.")
        # Slices read the baseline's dev predictions.
        if "slices" in self.diagnostics and "baseline" not in self.diagnostics:
            self.diagnostics = (*self.diagnostics, "baseline")
        self.diagnostics = tuple(name for name in ALL if name in self.diagnostics)


def plan_from_params(
    diagnostics: list[str] | tuple[str, ...], params: dict[str, Any], target_error: float | None
) -> Plan:
    """The plan a job's JSON parameters describe; raises TypeError/ValueError on bad values."""
    label_model = params.get("label_model")
    return Plan(
        diagnostics=tuple(diagnostics),
        target_error=params.get("target_error", target_error),
        model=ModelSpec.from_dict(params.get("model")),
        train=TrainConfig(**params.get("train", {})),
        label_options=label_mod.LabelIssueOptions(**params.get("label_issues", {})),
        label_train=replace(label_mod.DEFAULT_TRAIN, **params.get("label_train", {})),
        label_model=ModelSpec.from_dict(label_model) if label_model else label_mod.DEFAULT_MODEL,
        relabel=relabel_from_params(params.get("fix_labels")),
    )


#: Most corrected labels one job may carry.
MAX_RELABEL = 100_000
FIX_LABEL_KEYS = frozenset({"labels", "intervention", "from_job"})


def relabel_from_params(value: Any) -> tuple[tuple[int, str], ...]:
    """``fix_labels.labels`` (``[[row, class name], ...]``) checked; ValueError otherwise."""
    if value is None:
        return ()
    if not isinstance(value, dict) or set(value) - FIX_LABEL_KEYS:
        raise ValueError(f"fix_labels is an object with keys {sorted(FIX_LABEL_KEYS)}")
    for key in ("intervention", "from_job"):
        ref = value.get(key)
        if ref is not None and (not isinstance(ref, int) or isinstance(ref, bool)):
            raise ValueError(f"fix_labels.{key} is an id")
    labels = value.get("labels") or []
    if not isinstance(labels, list) or len(labels) > MAX_RELABEL:
        raise ValueError(f"fix_labels.labels is a list of at most {MAX_RELABEL} [row, label]")
    out = []
    for pair in labels:
        ok = isinstance(pair, list | tuple) and len(pair) == 2
        if not ok or not isinstance(pair[0], int) or isinstance(pair[0], bool) or pair[0] < 0:
            raise ValueError("each of fix_labels.labels is [row, label], row >= 0")
        out.append((pair[0], str(pair[1])))
    return tuple(out)


def relabelled(data: Dataset, relabel: tuple[tuple[int, str], ...]) -> Dataset:
    """``data`` with the corrected labels; DiagnosticsError for a row or class it lacks."""
    y = data.y.copy()
    for row, name in relabel:
        if row >= len(y) or name not in data.classes:
            raise DiagnosticsError(
                f"Cannot relabel row {row} as {name[:40]!r}: {data.name} has {len(y)} rows "
                f"and classes {', '.join(data.classes[:20])}."
            )
        y[row] = data.classes.index(name)
    return data.with_labels(y)


def run_diagnostics(
    data: Dataset, plan: Plan | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run ``plan`` on ``data``; returns the report (JSON-able) with timings per diagnostic."""
    plan = plan or Plan()
    progress = progress or Progress()
    if plan.relabel:
        data = relabelled(data, plan.relabel)
    progress.plan(list(plan.diagnostics))
    # Wall seconds per diagnostic, and the CPU seconds of the thread that ran it (what it
    # costs whatever else the machine runs).
    report: dict[str, Any] = {"dataset": _describe(data), "timings": {}, "cpu_timings": {}}
    state: dict[str, Any] = {}
    beside = _Beside("learning_curve", data, plan) if _curve_beside(plan) else None
    try:
        for name in plan.diagnostics:
            progress.start_stage(name)
            started, cpu = time.perf_counter(), time.thread_time()
            if beside is not None and name == beside.name:
                report[name] = beside.result(progress)
                report["timings"][name] = beside.seconds
                report["cpu_timings"][name] = beside.cpu_seconds
                continue
            report[name] = _RUNNERS[name](data, plan, progress, state)
            report["timings"][name] = round(time.perf_counter() - started, 2)
            report["cpu_timings"][name] = round(time.thread_time() - cpu, 2)
    finally:
        if beside is not None:
            beside.stop()
    if "label_issues" in report:
        report["data_quality"] = _data_quality(report)
    progress.stage, progress.within, progress.stage_index = "done", 0.0, len(plan.diagnostics)
    progress.emit({"step": "finished"}, force=True)
    return jsonable(report)


def _curve_beside(plan: Plan) -> bool:
    """Whether the learning curve trains in a thread beside the label-issue search.

    Only with a second core, and only when the label-issue model never draws from torch's
    global random generator (the batched MLP without dropout draws from its own), so both
    results are the same as one after the other.
    """
    wanted = {"label_issues", "learning_curve"} <= set(plan.diagnostics)
    private = plan.label_model.vectorizable and not plan.label_model.dropout
    return wanted and private and (os.cpu_count() or 1) > 1


class _Beside:
    """One diagnostic run in a thread while the others run in the caller's.

    torch releases the GIL inside its kernels, so on two cores both train at once. The thread
    has its own :class:`Progress` (no events: the caller's stay in order) whose only job is to
    stop it when :meth:`stop` is called: on a cancel, an error, or when the caller is done.
    """

    def __init__(self, name: str, data: Dataset, plan: Plan) -> None:
        self.name = name
        self.seconds = self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._outcome: Any = None
        self._error: BaseException | None = None
        own = Progress(should_cancel=self._stop.is_set)
        own.plan([name])
        self._thread = threading.Thread(
            target=self._run, args=(data, plan, own), name=f"mlexec-{name}", daemon=True
        )
        self._thread.start()

    def _run(self, data: Dataset, plan: Plan, progress: Progress) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self._outcome = _RUNNERS[self.name](data, plan, progress, {})
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        self.seconds = round(time.perf_counter() - started, 2)
        self.cpu_seconds = round(time.thread_time() - cpu, 2)

    def result(self, progress: Progress) -> Any:
        """Wait for the thread (still answering the caller's cancel checks); its result."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.25)
            progress.check()
        if self._error is not None:
            raise self._error
        return self._outcome

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _run_overfit(data: Dataset, plan: Plan, progress: Progress, state: dict[str, Any]) -> Any:
    return sanity.overfit_small_batch(
        data, plan.model, seed=plan.train.seed, progress=progress
    ).to_dict()


def _run_lr_range(data: Dataset, plan: Plan, progress: Progress, state: dict[str, Any]) -> Any:
    return sanity.lr_range_test(data, plan.model, seed=plan.train.seed, progress=progress).to_dict()


def _run_label_issues(data: Dataset, plan: Plan, progress: Progress, state: dict[str, Any]) -> Any:
    result = label_mod.find_label_issues(
        data, options=plan.label_options, spec=plan.label_model, config=plan.label_train,
        progress=progress,
    )  # fmt: skip
    state["suspected"] = result.mask
    out = result.to_dict()
    if data.image_shape is not None:
        out["image_shape"] = list(data.image_shape)
        for issue in out["issues"][:IMAGES_IN_REPORT]:
            issue["image"] = _image(data, issue["index"])
    return out


def _run_learning_curve(
    data: Dataset, plan: Plan, progress: Progress, state: dict[str, Any]
) -> Any:
    curve = curve_mod.learning_curve(
        data, target_error=plan.target_error, spec=plan.model, config=plan.train, progress=progress
    )
    return curve.to_dict()


def _run_baseline(data: Dataset, plan: Plan, progress: Progress, state: dict[str, Any]) -> Any:
    result = baseline_mod.baseline_run(
        data, spec=plan.model, config=plan.train,
        suspected_label_errors=state.get("suspected"), progress=progress,
    )  # fmt: skip
    state["baseline"] = result
    return {**result.to_dict(), "misclassified": misclassified(data, result)}


def _run_slices(data: Dataset, plan: Plan, progress: Progress, state: dict[str, Any]) -> Any:
    base = state["baseline"]
    analysis = slices.slice_errors(
        data, base.dev_rows, base.dev_predictions, state.get("suspected")
    )
    return analysis.to_dict()


_RUNNERS = {
    "overfit_batch": _run_overfit,
    "lr_range": _run_lr_range,
    "label_issues": _run_label_issues,
    "learning_curve": _run_learning_curve,
    "baseline": _run_baseline,
    "slices": _run_slices,
}


def _data_quality(report: dict[str, Any]) -> dict[str, Any]:
    """The label-noise reading that tempers the bias/variance reading."""
    issues = report["label_issues"]
    noise = issues["noise_rate"]
    quality: dict[str, Any] = {
        "label_quality": round(1.0 - noise, 4),
        "noise_rate": noise,
        "suspected_label_errors": issues["n_issues"],
    }
    base = report.get("baseline")
    if base and base.get("trusted_dev_error") is not None:
        quality["dev_error"] = base["errors"]["dev"]
        quality["trusted_dev_error"] = base["trusted_dev_error"]
    quality["note"] = (
        f"About {noise:.1%} of labels look wrong. Errors measured against these labels include "
        "them, so they overstate avoidable bias: fix the labels (data quality comes first in "
        "the intervention order) or add the noise rate to the human-level proxy."
    )
    return quality


def _describe(data: Dataset) -> dict[str, Any]:
    counts = np.bincount(data.y, minlength=data.n_classes)
    return {
        "name": data.name,
        "examples": len(data.y),
        "features": int(data.X.shape[1]),
        "classes": data.classes,
        "class_balance": {c: int(n) for c, n in zip(data.classes, counts, strict=True)},
        "image_shape": list(data.image_shape) if data.image_shape else None,
        "slice_column": data.slice_name,
    }


def misclassified(data: Dataset, base: baseline_mod.BaselineResult) -> list[dict[str, Any]]:
    """The baseline's wrong dev predictions (the first few), as the error-analysis page shows
    them: the given and predicted class, and the image or a readable row of features."""
    if base.dev_rows is None or base.dev_predictions is None:
        return []
    wrong = np.flatnonzero(base.dev_predictions != data.y[base.dev_rows])
    out, pixels = [], 0
    for position in wrong[:MISCLASSIFIED_IN_REPORT].tolist():
        index = int(base.dev_rows[position])
        example: dict[str, Any] = {
            "index": index,
            "given": data.classes[int(data.y[index])],
            "predicted": data.classes[int(base.dev_predictions[position])],
        }
        if data.image_shape is not None:
            pixels += data.X.shape[1]
            if pixels <= PIXEL_BUDGET:
                example["image"] = _image(data, index)
        else:
            example["features"] = _readable_row(data, index)
        if data.slices is not None:
            example["slice"] = str(data.slices[index])
        out.append(example)
    return out


def _readable_row(data: Dataset, index: int) -> list[list[Any]]:
    """``[name, value]`` pairs of one row; a one-hot column shows as its level, zeros left out."""
    names = data.feature_names or [f"x{i}" for i in range(data.X.shape[1])]
    pairs: list[list[Any]] = []
    for name, value in zip(names, data.X[index].tolist(), strict=False):
        column, eq, level = name.partition("=")
        if eq:
            if value == 1.0:
                pairs.append([column, level])
        else:
            pairs.append([name, round(float(value), 4)])
        if len(pairs) >= FEATURES_PER_ROW:
            break
    return pairs


def _image(data: Dataset, index: int) -> list[float]:
    """One row scaled to 0..1 for drawing, rounded to keep the report small."""
    row = data.X[index]
    low, high = float(row.min()), float(row.max())
    scaled = (row - low) / (high - low) if high > low else np.zeros_like(row)
    return [round(float(v), 2) for v in scaled]


def jsonable(value: Any) -> Any:
    """Plain JSON types all the way down (numpy scalars, tuples and dataclass leftovers)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
