"""Learning curves: train and dev error as the training set grows, and what more data buys.

For each of ``k`` folds the held-out fold is the dev set, and models train on nested, stratified
subsets of the other folds (all sizes and folds train at once, see ``training``). A power law
``dev(n) = a * n**-b + c`` fitted to the mean dev errors extrapolates: ``c`` is the error more
data cannot remove (bias plus Bayes error for this model), and the size where the curve meets
the target is the data the target would need.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.folds import stratified_folds
from mlexec_app.diagnostics.models import ModelSpec
from mlexec_app.diagnostics.progress import Progress
from mlexec_app.diagnostics.training import TrainConfig, fit_predict

WILL_HELP = "more data will help"
WONT_HELP = "more data won't help"
NOT_NEEDED = "target already met"
#: Beyond this multiple of the current data, "reachable" is not a practical answer.
MAX_PRACTICAL_FACTOR = 100.0


@dataclass(frozen=True)
class PowerLaw:
    """``error(n) = a * n**-exponent + asymptote``."""

    a: float
    exponent: float
    asymptote: float

    def predict(self, n: float) -> float:
        return self.a * n**-self.exponent + self.asymptote

    def size_for(self, error: float) -> float | None:
        """Training size where the curve reaches ``error``; None if it never does."""
        if error <= self.asymptote or self.a <= 0 or self.exponent <= 0:
            return None
        return float((self.a / (error - self.asymptote)) ** (1.0 / self.exponent))


@dataclass(frozen=True)
class LearningCurve:
    """Errors per training size, the fitted law, and the verdict on more data."""

    sizes: list[int]
    train_error: list[float]
    dev_error: list[float]
    dev_error_std: list[float]
    fit: PowerLaw | None
    target_error: float | None
    needed_size: int | None
    verdict: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_power_law(sizes: np.ndarray, errors: np.ndarray) -> PowerLaw | None:
    """Least-squares fit of ``a * n**-b + c``, scanning the asymptote ``c`` on a grid.

    For a fixed ``c``, ``log(err - c)`` is linear in ``log n``; the best ``c`` over a grid from
    0 to just below the smallest error wins. Returns None with fewer than three points.
    """
    sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
    if len(sizes) < 3:
        return None
    best: tuple[float, PowerLaw] | None = None
    floor = float(errors.min())
    for c in np.linspace(0.0, floor * 0.999, 200):
        gap = np.maximum(errors - c, 1e-9)
        slope, intercept = np.polyfit(np.log(sizes), np.log(gap), 1)
        if slope >= 0:
            continue
        law = PowerLaw(float(math.exp(intercept)), float(-slope), float(c))
        residual = float(np.sum((law.predict(sizes) - errors) ** 2))  # type: ignore[arg-type]
        if best is None or residual < best[0] - 1e-12:
            best = (residual, law)
    if best is None:  # error does not fall with data: everything left is the asymptote
        return PowerLaw(0.0, 0.0, float(errors[-1]))
    return best[1]


def learning_curve(
    data: Dataset,
    *,
    target_error: float | None = None,
    folds: int = 5,
    n_sizes: int = 6,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> LearningCurve:
    """Measure the curve on ``data`` and judge whether more data reaches ``target_error``."""
    spec = spec or ModelSpec()
    config = config or TrainConfig()
    dev_masks = stratified_folds(data.y, folds, config.seed)
    pool = len(data.y) - max(int(m.sum()) for m in dev_masks)
    sizes = training_sizes(pool, data.n_classes, n_sizes)
    order = _stratified_order(data.y, config.seed)
    masks, owners = [], []
    for fold, dev in enumerate(dev_masks):
        ranked = order[~dev[order]]
        for size in sizes:
            mask = np.zeros(len(data.y), bool)
            mask[ranked[:size]] = True
            masks.append(mask)
            owners.append((fold, size))
    if progress:
        progress.stage_step("sizes", 0, len(sizes), sizes=sizes)
    tick = progress.ticker("epoch") if progress else None
    probs = fit_predict(
        data.X, data.y, np.array(masks), data.n_classes, spec, config,
        image_shape=data.image_shape, tick=tick,
    )  # fmt: skip
    wrong = probs.argmax(-1) != data.y[None]
    train = np.zeros((folds, len(sizes)))
    dev = np.zeros((folds, len(sizes)))
    for m, (fold, size) in enumerate(owners):
        train[fold, sizes.index(size)] = wrong[m][masks[m]].mean()
        dev[fold, sizes.index(size)] = wrong[m][dev_masks[fold]].mean()
    return judge(sizes, train.mean(0), dev.mean(0), dev.std(0), target_error)


def judge(
    sizes: list[int],
    train_error: np.ndarray,
    dev_error: np.ndarray,
    dev_std: np.ndarray,
    target_error: float | None,
) -> LearningCurve:
    """Fit the law and turn it into a verdict (pure maths, no training)."""
    law = fit_power_law(np.array(sizes), dev_error)
    current = float(dev_error[-1])
    needed: int | None = None
    if target_error is not None and current <= target_error:
        verdict, reason = NOT_NEEDED, f"Dev error {current:.3f} already meets {target_error:.3f}."
    elif law is None:
        verdict, reason = WONT_HELP, "Too few training sizes to extrapolate."
    elif target_error is not None:
        train = float(train_error[-1])
        verdict, reason, needed = _against_target(law, sizes[-1], current, train, target_error)
    else:
        verdict, reason = _without_target(law, sizes[-1], current, float(train_error[-1]))
    return LearningCurve(
        sizes=list(sizes),
        train_error=[round(float(v), 4) for v in train_error],
        dev_error=[round(float(v), 4) for v in dev_error],
        dev_error_std=[round(float(v), 4) for v in dev_std],
        fit=law,
        target_error=target_error,
        needed_size=needed,
        verdict=verdict,
        reason=reason,
    )


def _against_target(
    law: PowerLaw, largest: int, current: float, train: float, target: float
) -> tuple[str, str, int | None]:
    size = law.size_for(target)
    if size is None or size / largest > MAX_PRACTICAL_FACTOR:
        return WONT_HELP, _unreachable(law, current, train, target), None
    factor = size / largest
    return (
        WILL_HELP,
        f"The extrapolated dev error reaches {target:.3f} at about {size:,.0f} training "
        f"examples ({factor:.1f}x today's {largest:,}).",
        int(math.ceil(size)),
    )


def _unreachable(law: PowerLaw, current: float, train: float, target: float) -> str:
    shape = (
        f"the curve levels off at {law.asymptote:.3f}"
        if law.exponent > 0.2
        else f"the curve is nearly flat at {current:.3f}"
    )
    if train > target:
        # The model does not even fit its training data to the target: classic bias.
        return (
            f"Not reachable with more data: bias. {shape.capitalize()}, above the target "
            f"{target:.3f}, and train error is {train:.3f}: reduce bias first (bigger model, "
            "longer training, better features)."
        )
    return (
        f"Not reachable with more data: {shape}, above the target {target:.3f}, although train "
        f"error is only {train:.3f}. An error floor the model cannot learn past: look for label "
        "noise (see the label issues) or inputs that do not determine the label."
    )


def _without_target(law: PowerLaw, largest: int, current: float, train: float) -> tuple[str, str]:
    gain = current - law.predict(largest * 10)
    if gain >= max(0.01, 0.1 * current):
        return WILL_HELP, f"Ten times more data would lower dev error by about {gain:.3f}."
    return (
        WONT_HELP,
        f"Ten times more data would gain only {gain:.3f}: the curve is flat near "
        f"{law.asymptote:.3f} (train error {train:.3f}).",
    )


def training_sizes(pool: int, n_classes: int, count: int) -> list[int]:
    """``count`` sizes spaced geometrically from a few per class up to the whole pool."""
    smallest = min(pool, max(5 * n_classes, pool // 20))
    raw = np.geomspace(smallest, pool, count)
    return sorted({int(round(v)) for v in raw})


def _stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """All rows in an order whose every prefix has roughly the class balance of the whole."""
    rng = np.random.default_rng(seed + 7919)
    keys = np.empty(len(y))
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        # Spread each class's rows evenly over [0, 1) so any prefix samples every class.
        keys[rows] = (rng.permutation(len(rows)) + rng.random()) / len(rows)
    return np.argsort(keys, kind="stable")
