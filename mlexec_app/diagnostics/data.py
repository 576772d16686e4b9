"""Datasets for the diagnostics: a CSV or NPZ file, a torch Dataset, or the bundled digits.

Every loader returns a :class:`Dataset`: a float feature matrix, integer labels ``0..K-1``, the
class names, the image shape when the rows are images (to draw suspected label errors), and an
optional slice column for per-slice error analysis.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlexec_app.diagnostics.exceptions import DatasetError
from mlexec_app.diagnostics.runtime import require

DEMO_DATASETS = ("digits",)


@dataclass(frozen=True)
class Dataset:
    """Features ``X`` (N, D) float32, labels ``y`` (N,) in ``0..K-1``, and what they mean."""

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    name: str = "dataset"
    image_shape: tuple[int, ...] | None = None
    slices: np.ndarray | None = None
    slice_name: str | None = None
    feature_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or len(self.X) != len(self.y):
            raise DatasetError(f"X must be (N, D) with N == len(y); got {self.X.shape}")
        if len(self.y) < 2 * len(self.classes) or len(self.classes) < 2:
            raise DatasetError("Need at least two classes and two examples per class.")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        return self.image_shape is not None

    def subset(self, index: np.ndarray) -> Dataset:
        """The rows ``index`` (class list unchanged)."""
        slices = None if self.slices is None else self.slices[index]
        return Dataset(
            self.X[index], self.y[index], self.classes, self.name, self.image_shape, slices,
            self.slice_name, self.feature_names,
        )  # fmt: skip

    def with_labels(self, y: np.ndarray) -> Dataset:
        """The same rows with other labels (used to inject known label noise)."""
        return Dataset(
            self.X, np.asarray(y, dtype=np.int64), self.classes, self.name, self.image_shape,
            self.slices, self.slice_name, self.feature_names,
        )  # fmt: skip


def load_dataset(spec: str, *, label: str = "label", slice_column: str | None = None) -> Dataset:
    """Load ``spec``: ``digits``, a ``.csv``/``.npz`` path, or a dotted path to a torch Dataset.

    Parameters
    ----------
    spec:
        What to load. A dotted path may name a Dataset instance, a class or a function that
        returns one when called without arguments.
    label:
        The label column of a CSV file.
    slice_column:
        A CSV column to slice errors by (kept out of the features when it is not numeric).
    """
    if spec in DEMO_DATASETS or spec.startswith("demo:"):
        return load_demo(spec.removeprefix("demo:"))
    suffix = Path(spec).suffix.lower()
    if suffix == ".csv":
        return load_csv(spec, label=label, slice_column=slice_column)
    if suffix == ".npz":
        return load_npz(spec)
    if "." in spec and "/" not in spec:
        return load_torch_dataset(spec)
    raise DatasetError(
        f"Unknown dataset {spec!r}: use 'digits', a .csv or .npz file, or a dotted path."
    )


def load_demo(name: str) -> Dataset:
    """scikit-learn's bundled digits: 1,797 8x8 images, pixel values 0..16, nothing downloaded."""
    if name != "digits":
        raise DatasetError(f"Unknown demo dataset {name!r}; available: {', '.join(DEMO_DATASETS)}")
    datasets = require("sklearn.datasets")
    bunch = datasets.load_digits()
    return Dataset(
        X=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.int64),
        classes=[str(c) for c in bunch.target_names],
        name="digits",
        image_shape=(1, 8, 8),
        feature_names=list(bunch.feature_names),
    )


def load_csv(path: str | Path, *, label: str = "label", slice_column: str | None = None) -> Dataset:
    """A CSV with a header row: numeric feature columns, one-hot text columns, a label column."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DatasetError(f"{path} has no data rows.")
    columns = list(rows[0])
    if label not in columns:
        raise DatasetError(f"{path} has no label column {label!r}; columns: {', '.join(columns)}")
    if slice_column is not None and slice_column not in columns:
        raise DatasetError(f"{path} has no slice column {slice_column!r}.")
    y, classes = encode_labels([row[label] for row in rows])
    blocks, names = [], []
    for column in columns:
        if column == label:
            continue
        values = [row[column] for row in rows]
        numeric = _as_floats(values)
        if numeric is not None:
            blocks.append(numeric[:, None])
            names.append(column)
        elif column != slice_column:
            onehot, levels = _one_hot(values)
            blocks.append(onehot)
            names.extend(f"{column}={level}" for level in levels)
    if not blocks:
        raise DatasetError(f"{path} has no feature columns besides the label.")
    slices = None if slice_column is None else np.array([row[slice_column] for row in rows])
    X = np.hstack(blocks).astype(np.float32)
    return Dataset(X, y, classes, Path(path).stem, None, slices, slice_column, names)


def load_npz(path: str | Path) -> Dataset:
    """An NPZ with ``X`` (N, ...) and ``y``; optional ``classes`` and ``slices``.

    ``X`` with more than two dimensions is taken as images (N, H, W) or (N, C, H, W).
    """
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    X = _first(arrays, ("X", "x", "features", "data"), path)
    raw_y = _first(arrays, ("y", "labels", "target"), path)
    return _from_arrays(
        X, raw_y, Path(path).stem, arrays.get("classes"), arrays.get("slices"), "slice"
    )


def load_torch_dataset(dotted: str) -> Dataset:
    """A torch ``Dataset`` (or a class/function returning one) of ``(features, label)`` items."""
    module_loading = require("django.utils.module_loading")
    try:
        target: Any = module_loading.import_string(dotted)
    except ImportError as exc:
        raise DatasetError(f"Cannot import dataset {dotted!r}: {exc}") from exc
    dataset = target() if callable(target) and not hasattr(target, "__getitem__") else target
    if isinstance(dataset, type):
        dataset = dataset()
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except (TypeError, IndexError) as exc:
        raise DatasetError(f"{dotted} is not a sized Dataset of (features, label): {exc}") from exc
    X = np.stack([np.asarray(item[0], dtype=np.float32) for item in items])
    raw_y = np.array([_scalar(item[1]) for item in items])
    classes = getattr(dataset, "classes", None)
    return _from_arrays(X, raw_y, dotted.rsplit(".", 1)[-1], classes, None, None)


def encode_labels(values: Any) -> tuple[np.ndarray, list[str]]:
    """Map raw labels to ``0..K-1``; integer labels keep their order, text sorts."""
    array = np.asarray(values)
    levels = np.unique(array)
    y = np.searchsorted(levels, array).astype(np.int64)
    return y, [str(level) for level in levels]


def _from_arrays(
    X: np.ndarray, raw_y: np.ndarray, name: str, classes: Any, slices: Any, slice_name: Any
) -> Dataset:
    X = np.asarray(X, dtype=np.float32)
    image_shape = None
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim == 4:
        image_shape = tuple(int(s) for s in X.shape[1:])
    y, names = encode_labels(raw_y)
    if classes is not None and len(classes) == len(names):
        names = [str(c) for c in classes]
    slices = None if slices is None else np.asarray(slices)
    flat = X.reshape(len(X), -1)
    slice_name = slice_name if slices is not None else None
    return Dataset(flat, y, names, name, image_shape, slices, slice_name)


def _first(arrays: dict[str, np.ndarray], keys: tuple[str, ...], path: Any) -> np.ndarray:
    for key in keys:
        if key in arrays:
            return arrays[key]
    raise DatasetError(f"{path} has none of the arrays {', '.join(keys)}; has {', '.join(arrays)}")


def _as_floats(values: list[str]) -> np.ndarray | None:
    try:
        return np.array([float(v) if v.strip() else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return None


def _one_hot(values: list[str]) -> tuple[np.ndarray, list[str]]:
    levels = sorted(set(values))
    index = {level: i for i, level in enumerate(levels)}
    out = np.zeros((len(values), len(levels)))
    out[np.arange(len(values)), [index[v] for v in values]] = 1.0
    return out, levels


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
