"""Learning curves: train and dev error as the training set grows, and what more data buys.

For each of ``k`` folds the held-out fold is the dev set, and models train on nested, stratified
subsets of the other folds (all sizes and folds train at once, see ``training``). A power law
``dev(n) = a * n**-b + c`` fitted to the mean dev errors extrapolates: ``c`` is the error more
data cannot remove (bias plus Bayes error for this model), and the size where the curve meets
the target is the data the target would need.

How sure the extrapolation is comes from a bootstrap over folds and sizes: each replicate draws
the folds with replacement (their dev errors averaged per size) and the training sizes with
replacement (a size drawn twice weighs twice, one not drawn is left out of the fit), refits the
law and predicts. The spread of the replicates' predictions, plus the binomial noise of
measuring a dev error on that many rows, gives each prediction its interval (80% by default).
The verdict reads the interval, never the point alone: more data helps only when the whole
interval of what ten times the data gains is material, won't help only when none of it is, and
can't tell yet otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.folds import stratified_folds
from mlexec_app.diagnostics.models import ModelSpec
from mlexec_app.diagnostics.progress import Progress
from mlexec_app.diagnostics.training import TrainConfig, fit_predict
from mlexec_app.methodology.more_data import (  # noqa: F401  (re-exported for callers)
    BEYOND_PRACTICAL,
    CANT_TELL,
    FLAT_BIAS,
    FLAT_FLOOR,
    HELPS,
    NOT_NEEDED,
    REACHES_TARGET,
    TARGET_MET,
    TOO_FEW_SIZES,
    UNCERTAIN,
    VERDICTS,
    WILL_HELP,
    WONT_HELP,
)

#: Beyond this multiple of the current data, "reachable" is not a practical answer.
MAX_PRACTICAL_FACTOR = 100.0
#: Coverage of every interval of the curve.
LEVEL = 0.8
#: Bootstrap replicates (vectorised: a few milliseconds each).
REPLICATES = 400
#: The factors of today's data whose dev error is predicted.
FACTORS = (2.0, 10.0)
#: Stands for "never" among replicate sizes, so quantiles stay finite.
NEVER = 1e30


def material_gain(current: float) -> float:
    """The least gain from ten times the data that is worth collecting it for."""
    return max(0.01, 0.1 * current)


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
class Estimate:
    """A point estimate with its ``LEVEL`` interval."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        v, lo, hi = (f"{x:.{digits}f}" for x in (self.value, self.low, self.high))
        return f"{v} ({LEVEL:.0%} interval {lo} to {hi})"


@dataclass(frozen=True)
class LearningCurve:
    """Errors per training size, the fitted law with intervals, and the verdict on more data."""

    sizes: list[int]
    train_error: list[float]
    dev_error: list[float]
    dev_error_std: list[float]
    fit: PowerLaw | None
    target_error: float | None
    needed_size: int | None
    verdict: str
    reason: str
    case: str = ""
    #: Dev error predicted at 2x and 10x today's data: ``{"2": {...}, "10": {...}}``.
    extrapolated: dict[str, Any] = field(default_factory=dict)
    asymptote: dict[str, float] | None = None
    #: What ten times the data would gain (today's dev error minus the 10x prediction).
    gain: dict[str, float] | None = None
    #: Training size the target needs, with its interval (None: beyond reach of the fit).
    needed: dict[str, float | None] | None = None
    #: Can't tell yet: how many times today's data would tell (None otherwise).
    tell_factor: float | None = None
    level: float = LEVEL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit_many(
    sizes: np.ndarray, errors: np.ndarray, weights: np.ndarray, grid: int = 120
) -> np.ndarray:
    """Weighted least-squares fits of ``a n^-b + c`` for many error rows at once.

    ``errors`` and ``weights`` are (B, S); returns (B, 3) columns ``a, b, c``. For a fixed ``c``
    ``log(err - c)`` is linear in ``log n``; ``c`` is scanned on a grid from 0 to just below
    each row's smallest error and the one with the least squared error wins. A row whose error
    never falls gets ``a = b = 0`` and its last error as the asymptote.
    """
    x = np.log(sizes.astype(float))
    floor = np.min(np.where(weights > 0, errors, np.inf), axis=1)
    cs = floor[:, None] * np.linspace(0.0, 0.999, grid)[None, :]  # (B, G)
    gap = np.maximum(errors[:, None, :] - cs[:, :, None], 1e-9)  # (B, G, S)
    y = np.log(gap)
    w = weights[:, None, :]
    sw = w.sum(-1)
    xbar = (w * x).sum(-1) / sw
    ybar = (w * y).sum(-1) / sw
    dx = x - xbar[..., None]
    slope = (w * dx * (y - ybar[..., None])).sum(-1) / np.maximum((w * dx * dx).sum(-1), 1e-12)
    a = np.exp(ybar - slope * xbar)
    pred = a[..., None] * np.exp(slope[..., None] * x) + cs[..., None]
    resid = (w * (pred - errors[:, None, :]) ** 2).sum(-1)
    resid = np.where(slope < 0, resid, np.inf)
    best = np.argmin(resid, axis=1)
    rows = np.arange(len(errors))
    out = np.stack([a[rows, best], -slope[rows, best], cs[rows, best]], axis=1)
    flat = ~np.isfinite(resid[rows, best])
    if flat.any():
        last = np.array([errors[r][weights[r] > 0][-1] for r in np.flatnonzero(flat)])
        out[flat] = np.stack([np.zeros(len(last)), np.zeros(len(last)), last], axis=1)
    return out


def fit_power_law(sizes: np.ndarray, errors: np.ndarray) -> PowerLaw | None:
    """Least-squares fit of ``a * n**-b + c``; None with fewer than three points."""
    sizes, errors = np.asarray(sizes, float), np.asarray(errors, float)
    if len(sizes) < 3:
        return None
    a, b, c = _fit_many(sizes, errors[None], np.ones((1, len(sizes))), grid=200)[0]
    return PowerLaw(float(a), float(b), float(c))


def _predict(params: np.ndarray, n: float) -> np.ndarray:
    return params[:, 0] * n ** -params[:, 1] + params[:, 2]


@dataclass(frozen=True)
class Bootstrap:
    """Replicate fits of one curve; answers "what dev error at n, how sure?"."""

    law: PowerLaw
    params: np.ndarray  # (B, 3)
    current: np.ndarray  # (B,) each replicate's dev error at the largest size
    current_value: float
    dev_rows: int  # rows a dev error is measured on (all folds together)
    seed: int = 0

    def predicted(self, n: float) -> Estimate:
        """The dev error the same procedure would measure at ``n`` training examples."""
        point = self.law.predict(n)
        reps = _predict(self.params, n)
        rng = np.random.default_rng(self.seed + 1)
        noise = np.sqrt(
            np.clip(reps, 0.0, 1.0) * (1 - np.clip(reps, 0.0, 1.0)) / max(self.dev_rows, 1)
        )
        reps = np.clip(reps + rng.standard_normal(len(reps)) * noise, 0.0, 1.0)
        return _estimate(point, reps)

    def gain_at(self, n: float) -> Estimate:
        point = self.current_value - self.law.predict(n)
        return _estimate(point, self.current - _predict(self.params, n))

    def asymptote(self) -> Estimate:
        return _estimate(self.law.asymptote, self.params[:, 2])

    def needed(self, target: float) -> tuple[float | None, float | None, float | None]:
        """Size the target needs: the point and its interval (None: never, on that side)."""
        point = self.law.size_for(target)
        a, b, c = self.params.T
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            size = np.where(
                (target > c) & (a > 0) & (b > 0),
                (a / np.maximum(target - c, 1e-12)) ** (1 / np.maximum(b, 1e-12)),
                NEVER,
            )
        size = np.where(np.isfinite(size), np.minimum(size, NEVER), NEVER)
        tail = (1 - LEVEL) / 2
        low, high = (float(v) for v in np.quantile(size, [tail, 1 - tail]))
        return point, (low if low < NEVER else None), (high if high < NEVER else None)


def _estimate(point: float, reps: np.ndarray) -> Estimate:
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return Estimate(
        round(float(point), 4), round(float(min(low, point)), 4), round(float(max(high, point)), 4)
    )


def bootstrap(
    sizes: list[int] | np.ndarray,
    dev_by_fold: np.ndarray,
    *,
    dev_rows: int | None = None,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> Bootstrap | None:
    """Fit the curve and ``replicates`` resampled fits (folds and sizes with replacement)."""
    sizes = np.asarray(sizes, float)
    dev_by_fold = np.atleast_2d(np.asarray(dev_by_fold, float))
    n_folds, n_sizes = dev_by_fold.shape
    if n_sizes < 3:
        return None
    mean = dev_by_fold.mean(0)
    law = fit_power_law(sizes, mean)
    assert law is not None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_folds, (replicates, n_folds))
    errors = dev_by_fold[picks].mean(1)  # (B, S)
    weights = np.stack(
        [
            np.bincount(rng.integers(0, n_sizes, n_sizes), minlength=n_sizes)
            for _ in range(replicates)
        ]
    ).astype(float)
    too_few = (weights > 0).sum(1) < 3
    weights[too_few] = 1.0
    params = _fit_many(sizes, errors, weights)
    rows = (
        dev_rows if dev_rows is not None else int(round(sizes[-1] * n_folds / max(n_folds - 1, 1)))
    )
    return Bootstrap(law, params, errors[:, -1], float(mean[-1]), rows, seed)


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
    sizes, train, dev = measure(
        data, folds=folds, n_sizes=n_sizes, spec=spec, config=config, progress=progress
    )
    return judge(sizes, train.mean(0), dev, target_error, dev_rows=len(data.y))


def measure(
    data: Dataset,
    *,
    folds: int = 5,
    n_sizes: int = 6,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Train and dev error of every fold at every size: ``(sizes, train, dev)``, (folds, S)."""
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
    return sizes, train, dev


def judge(
    sizes: list[int],
    train_error: np.ndarray,
    dev_by_fold: np.ndarray,
    target_error: float | None,
    *,
    dev_rows: int | None = None,
    seed: int = 0,
) -> LearningCurve:
    """Fit the law with its bootstrap and turn it into a verdict (pure maths, no training).

    ``dev_by_fold`` is (folds, sizes), or one row of mean dev errors.
    """
    dev_by_fold = np.atleast_2d(np.asarray(dev_by_fold, float))
    train_error = np.asarray(train_error, float)
    dev_error = dev_by_fold.mean(0)
    boot = bootstrap(sizes, dev_by_fold, dev_rows=dev_rows, seed=seed)
    current = float(dev_error[-1])
    train = float(train_error[-1])
    largest = int(sizes[-1])
    found: dict[str, Any] = {}
    if boot is not None:
        found["extrapolated"] = {
            f"{factor:g}": {
                "size": int(largest * factor),
                **asdict(boot.predicted(largest * factor)),
            }
            for factor in FACTORS
        }
        found["asymptote"] = asdict(boot.asymptote())
        found["gain"] = asdict(boot.gain_at(largest * 10))
    if target_error is not None and current <= target_error:
        verdict, case = NOT_NEEDED, TARGET_MET
        reason = f"Dev error {current:.3f} already meets the target {target_error:.3f}."
    elif boot is None:
        verdict, case = CANT_TELL, TOO_FEW_SIZES
        reason = "Too few training sizes to extrapolate: a curve needs at least three."
    else:
        verdict, case, reason, extra = _verdict(boot, largest, current, train, target_error)
        found.update(extra)
    return LearningCurve(
        sizes=[int(s) for s in sizes],
        train_error=[round(float(v), 4) for v in train_error],
        dev_error=[round(float(v), 4) for v in dev_error],
        dev_error_std=[round(float(v), 4) for v in dev_by_fold.std(0)],
        fit=boot.law if boot else None,
        target_error=target_error,
        needed_size=found.pop("needed_size", None),
        verdict=verdict,
        reason=reason,
        case=case,
        **found,
    )


def _verdict(
    boot: Bootstrap, largest: int, current: float, train: float, target: float | None
) -> tuple[str, str, str, dict[str, Any]]:
    gain = boot.gain_at(largest * 10)
    floor = material_gain(current)
    ten_x = (
        f"ten times today's {largest:,} training examples would lower dev error by {gain.text()}"
    )
    Ten_x = ten_x[0].upper() + ten_x[1:]  # noqa: N806
    if gain.low >= floor:
        if target is None:
            return WILL_HELP, HELPS, f"{Ten_x}, from {current:.3f}.", {}
        point, low, high = boot.needed(target)
        needed = {"value": point, "low": low, "high": high}
        if point is not None and point / largest <= MAX_PRACTICAL_FACTOR:
            span = (
                f"{low or point:,.0f} to {high:,.0f}"
                if high is not None
                else f"{low or point:,.0f} or more"
            )
            return (
                WILL_HELP,
                REACHES_TARGET,
                f"The extrapolated dev error reaches the target {target:.3f} at about "
                f"{point:,.0f} training examples ({point / largest:.1f}x today's {largest:,}; "
                f"{LEVEL:.0%} interval {span}). {Ten_x}.",
                {"needed": needed, "needed_size": int(math.ceil(point))},
            )
        return (
            WILL_HELP,
            BEYOND_PRACTICAL,
            f"More data helps but does not reach the target at a practical size. {Ten_x}; the "
            f"target {target:.3f} needs more than {MAX_PRACTICAL_FACTOR:.0f}x today's data "
            f"({_levels_off(boot.law.asymptote, target)}).",
            {"needed": needed},
        )
    if gain.high < floor:
        case = FLAT_BIAS if target is not None and train > target else FLAT_FLOOR
        head = f"{Ten_x}, less than the {floor:.3f} worth collecting it for"
        if target is None:
            return (
                WONT_HELP,
                case,
                f"{head}: the curve is flat near {current:.3f} (train error {train:.3f}).",
                {},
            )
        if case == FLAT_BIAS:
            return (
                WONT_HELP,
                case,
                f"Not reachable with more data: bias. {head}; dev error {current:.3f} is "
                f"{_side(current, target)} the target {target:.3f} and train error {train:.3f} is "
                f"{_side(train, target)} it: reduce bias first (bigger model, longer training, "
                "better features).",
                {},
            )
        return (
            WONT_HELP,
            case,
            f"Not reachable with more data: an error floor. {head}; dev error {current:.3f} is "
            f"{_side(current, target)} the target {target:.3f} although train error is only "
            f"{train:.3f}. Look for label noise (see the label issues) or inputs that do not "
            "determine the label.",
            {},
        )
    factor = tell_factor(gain, floor)
    more = (
        f"about {factor:.0f}x today's data ({int(largest * factor):,} training examples) would tell"
        if factor <= MAX_PRACTICAL_FACTOR
        else f"even {MAX_PRACTICAL_FACTOR:.0f}x today's data might not tell"
    )
    return (
        CANT_TELL,
        UNCERTAIN,
        f"Can't tell yet: {ten_x}, an interval on both sides of the {floor:.3f} worth "
        f"collecting it for; {more}.",
        {"tell_factor": round(factor, 1)},
    )


def tell_factor(gain: Estimate, floor: float) -> float:
    """How many times today's data would shrink the gain's interval off the threshold.

    The interval narrows roughly as one over the square root of the data (fold noise and
    extrapolation distance both shrink), so it must shrink by half-width / distance.
    """
    half = max((gain.high - gain.low) / 2, 1e-6)
    distance = max(abs(gain.value - floor), half / math.sqrt(MAX_PRACTICAL_FACTOR * 10))
    return max(2.0, (half / distance) ** 2)


def _side(value: float, target: float) -> str:
    return "above" if value > target else "at" if value == target else "below"


def _levels_off(asymptote: float, target: float) -> str:
    if asymptote >= target:
        return f"the curve levels off at {asymptote:.3f}, {_side(asymptote, target)} the target"
    return (
        f"the curve levels off at {asymptote:.3f}, below the target, but only far beyond "
        "today's data"
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
