"""Learning curves: train and dev error as the training set grows, and what more data buys.

For each of ``k`` folds the held-out fold is the dev set, and models train on nested, stratified
subsets of the other folds (all sizes and folds train at once, see ``training``); data under
1,200 rows is measured in several passes of the folds (see :func:`repeats_for`). Three curve
shapes are fitted to the mean dev errors, each size weighted by its size over its binomial
noise: a power law with a floor ``a n^-b + c`` (``c`` is the error more data cannot remove), a
power law without one ``a n^-b``, and a plateau that falls and levels off
``c + (d - c) / (1 + (n/k)^b)`` (the one shape whose fall may still speed up). Which shape to
believe is decided on the measured points only: each is fitted on all but the two largest sizes
and scored on those (plus Akaike's 2 per free parameter), and the prediction is the average
weighted by that score (a likelihood).

How sure the extrapolation is comes from a bootstrap over folds and sizes and shapes: each
replicate draws the folds with replacement (their dev errors averaged per size; with several
passes, the rows and the passes, crossed), the training sizes with replacement (a size drawn
twice weighs twice, one not drawn is left out of the fit) and a shape by its weight, refits,
and is shifted by the error the averaged shapes made on the held-out sizes (pooled over every
split of the measured sizes into a fitted start and the largest), grown in proportion to how
far (in log size) the prediction reaches. The 10th and 90th percentiles, plus the binomial
noise of measuring a dev error on the dev set such data would have, give each prediction its
interval (80% by default). The gain of more data is never below 0 (more data does not raise
the expected dev error) nor below the least gain the measured fall over the last doubling
guarantees if the error above its floor falls no faster than ``1/n`` (see :class:`Fall`). The
verdict reads the interval, never the point alone: more data helps only when the whole
interval of what ten times the data gains is material, won't help only when none of it is,
and can't tell yet otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np

from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.folds import stratified_folds
from mlexec_app.diagnostics.networks import ModelSpec
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
#: How far beyond today's data the report's band of the averaged curve reaches.
BAND_FACTOR = 10.0
#: The steepest power law the error above its floor is assumed to fall by (``n^-1``, the
#: parametric rate): it turns a measured fall into a least further gain (see :func:`fall`).
MAX_EXPONENT = 1.0
#: The measured fall the least further gain rests on spans this multiple of sizes: the last
#: doubling of today's data.
FALL_SPAN = 2.0
#: Small data is measured several times over (new folds, new nested subsets, new models) until
#: about this many dev answers back each size: each model costs the same whatever its training
#: size (see ``training``), so the repeats cost in proportion to their count, and only data
#: under half this many rows gets any.
REPEAT_ROWS = 2400
#: At most this many passes of the k folds (300 rows: 8 x 30 models, about 15 s on one core).
MAX_REPEATS = 8


def repeats_for(rows: int) -> int:
    """Passes of the k folds a learning curve measures on ``rows`` rows (1 from 1,200 rows)."""
    return int(min(MAX_REPEATS, max(1, REPEAT_ROWS // max(rows, 1))))


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
    #: Weight of each curve shape in the average (see :func:`bootstrap`).
    shapes: dict[str, float] = field(default_factory=dict)
    #: The averaged curve beyond today's data with its interval, for drawing:
    #: ``[{"size", "value", "low", "high"}, ...]``.
    band: list[dict[str, float]] = field(default_factory=list)
    #: Dev error's fall over the last doubling of the measured sizes, with its lower bound:
    #: ``{"start", "end", "value", "low"}`` (see :class:`Fall`).
    fall: dict[str, float] | None = None

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


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares line ``y = icpt + slope x`` along the last axis."""
    sw = np.maximum(w.sum(-1), 1e-12)
    xbar, ybar = (w * x).sum(-1) / sw, (w * y).sum(-1) / sw
    dx = x - xbar[..., None]
    slope = (w * dx * (y - ybar[..., None])).sum(-1) / np.maximum((w * dx * dx).sum(-1), 1e-12)
    return ybar - slope * xbar, slope


def _fit_floorless(sizes: np.ndarray, errors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``a n^-b`` (no floor: every error is learnable): a line in log-log; (B, 2) ``a, b``."""
    x = np.broadcast_to(np.log(sizes), errors.shape)
    icpt, slope = _wls(x, np.log(np.maximum(errors, 1e-3)), weights)
    return np.stack([np.exp(icpt), -np.minimum(slope, 0.0)], axis=1)


def _fit_plateau(
    sizes: np.ndarray, errors: np.ndarray, weights: np.ndarray, grid: int = 24
) -> np.ndarray:
    """``c + (d - c) / (1 + (n/k)^b)``: a plateau at small sizes, a power-law fall, a floor.

    The one shape here whose fall can still speed up on a log scale (a curve still in its
    "small data" region). For fixed floor ``c`` and start ``d`` it is a line in log-log
    (``log((d-c)/(e-c) - 1) = b log n - b log k``); both are scanned on a grid. (B, 4):
    ``c, d, -b log k, b``.
    """
    x = np.log(sizes)
    rows = len(errors)
    low = np.min(np.where(weights > 0, errors, np.inf), axis=1)
    high = np.max(np.where(weights > 0, errors, -np.inf), axis=1)
    cs = low[:, None] * np.linspace(0.0, 0.98, grid)[None]
    top = np.maximum(1.0, high + 0.01)
    ds = high[:, None] + (top - high)[:, None] * np.linspace(0.02, 1.0, grid)[None]
    c, d = cs[:, :, None, None], ds[:, None, :, None]
    e = errors[:, None, None, :]
    y = np.log(np.maximum((d - c) / np.maximum(e - c, 1e-9) - 1.0, 1e-9))
    w = np.broadcast_to(weights[:, None, None, :], y.shape)
    icpt, slope = _wls(np.broadcast_to(x, y.shape), y, w)
    b = np.maximum(slope, 1e-6)
    pred = c + (d - c) / (1.0 + np.exp(icpt[..., None] + b[..., None] * x))
    resid = np.where(slope > 0, (w * (pred - e) ** 2).sum(-1), np.inf).reshape(rows, -1)
    best = resid.argmin(1)
    gc, gd = np.unravel_index(best, (grid, grid))
    r = np.arange(rows)
    out = np.stack([cs[r, gc], ds[r, gd], icpt[r, gc, gd], b[r, gc, gd]], axis=1)
    flat = ~np.isfinite(resid[r, best])
    if flat.any():  # never falls: flat at its last error
        last = np.array([errors[i][weights[i] > 0][-1] for i in np.flatnonzero(flat)])
        out[flat] = np.stack([last, last, np.zeros_like(last), np.full_like(last, 1e-6)], 1)
    return out


def _curve(shape: str, params: np.ndarray, n: np.ndarray | list[float]) -> np.ndarray:
    """(B, len(n)) errors of each row of ``params`` at sizes ``n``."""
    p = params[:, :, None]
    n = np.asarray(n, float)[None]
    if shape == POWER_LAW:
        return p[:, 0] * n ** -p[:, 1] + p[:, 2]
    if shape == FLOORLESS:
        return p[:, 0] * n ** -p[:, 1]
    return p[:, 0] + (p[:, 1] - p[:, 0]) / (1.0 + np.exp(p[:, 2] + p[:, 3] * np.log(n)))


def _floor(shape: str, params: np.ndarray) -> np.ndarray:
    """Each row's error at infinite data."""
    if shape == FLOORLESS:
        return np.zeros(len(params))
    return params[:, 2] if shape == POWER_LAW else params[:, 0]


#: The curve shapes averaged, and their fits ``(sizes, errors (B, S), weights (B, S))``.
POWER_LAW, FLOORLESS, PLATEAU = "power law with floor", "power law", "plateau, fall, floor"
_FITS = {POWER_LAW: _fit_many, FLOORLESS: _fit_floorless, PLATEAU: _fit_plateau}
#: Free parameters of each shape: a shape's score pays 2 for each (Akaike's criterion), so a
#: more flexible shape must predict the held-out sizes better to outweigh a simpler one.
PARAMETERS = {POWER_LAW: 3, FLOORLESS: 2, PLATEAU: 4}
#: The largest sizes each shape is scored on, fitted on the others (needs 3 + this many sizes).
HOLD_OUT = 2
#: Sizes the size a target needs is searched over, as multiples of today's largest size.
SEARCH_FACTORS = np.geomspace(1.0, 1e5, 600)


@dataclass(frozen=True)
class Bootstrap:
    """Replicate fits of one curve, averaged over shapes; answers "what dev error at n, how sure?".

    Each replicate is one resampled curve (folds and sizes drawn with replacement), fitted by
    one shape drawn with its weight, and shifted by the extrapolation error the shapes made on
    the measured sizes, grown with the distance of the extrapolation.
    """

    law: PowerLaw  # the plain power law with floor, fitted to the mean curve
    weights: dict[str, float]
    points: dict[str, np.ndarray]  # shape -> (1, k) params fitted to the mean curve
    params: dict[str, np.ndarray]  # shape -> (B, k) params of its replicates
    pick: np.ndarray  # (B,) shape of each replicate
    shift: np.ndarray  # (B,) standard normal: the replicate's share of the extrapolation error
    spread: float  # extrapolation error per unit of log-distance beyond the largest size
    largest: float
    current: np.ndarray  # (B,) each replicate's dev error at the largest size
    current_value: float
    dev_rows: int  # rows a dev error is measured on today (all folds together)
    seed: int = 0
    #: Today's train error: training error only grows with the data and dev error only falls
    #: towards it, so no extrapolated dev error goes below it.
    train_floor: float = 0.0
    #: The measured fall over the last doubling, and its lower bound (see :func:`fall`).
    fall: Fall | None = None

    def value(self, n: float) -> float:
        """The averaged curve at ``n``, at least the measured fall's least gain below today."""
        mean = sum(w * _curve(s, self.points[s], [n])[0, 0] for s, w in self.weights.items())
        if self.fall is not None:
            mean = min(mean, self.current_value - self.fall.least_gain(n / self.largest))
        return float(max(mean, self.train_floor))

    def replicas(self, n: np.ndarray | float) -> np.ndarray:
        """(B, len(n)) replicate curves at ``n`` (sizes at or above the largest)."""
        n = np.atleast_1d(np.asarray(n, float))
        out = np.zeros((len(self.pick), len(n)))
        for shape, params in self.params.items():
            mine = self.pick == shape
            if mine.any():
                out[mine] = _curve(shape, params[mine], n)
        distance = np.log(np.maximum(n, self.largest) / self.largest)
        return np.maximum(
            out + self.shift[:, None] * self.spread * distance[None], self.train_floor
        )

    def predicted(self, n: float) -> Estimate:
        """The dev error the same procedure would measure at ``n`` training examples.

        That procedure's dev set grows with the data, so the binomial noise of measuring it is
        that of ``dev_rows * n / largest`` rows.
        """
        reps = np.clip(self.replicas(n)[:, 0], 0.0, 1.0)
        rows = max(self.dev_rows * max(n / self.largest, 1.0), 1.0)
        rng = np.random.default_rng(self.seed + 1)
        reps = np.clip(reps + rng.standard_normal(len(reps)) * np.sqrt(reps * (1 - reps) / rows),
                       0.0, 1.0)  # fmt: skip
        return _estimate(self.value(n), reps)

    def gain_at(self, n: float) -> Estimate:
        """What ``n`` training examples gain over today's dev error.

        The bootstrap's interval, with two things known about it: more data of the same kind
        does not raise the expected dev error (no gain below 0), and the measured fall over the
        last doubling sets a least gain (:meth:`Fall.least_gain`); the point is never below
        that lower end.
        """
        boot = _estimate(self.current_value - self.value(n), self.current - self.replicas(n)[:, 0])
        least = self.fall.least_gain(n / self.largest) if self.fall else 0.0
        low = max(boot.low, least, 0.0)
        value = max(boot.value, low)
        return Estimate(round(value, 4), round(low, 4), round(max(boot.high, value), 4))

    def asymptote(self) -> Estimate:
        point = sum(w * float(_floor(s, self.points[s])[0]) for s, w in self.weights.items())
        reps = np.zeros(len(self.pick))
        for shape, params in self.params.items():
            mine = self.pick == shape
            reps[mine] = _floor(shape, params[mine])
        return _estimate(point, reps)

    def needed(self, target: float) -> tuple[float | None, float | None, float | None]:
        """Size the target needs: the point and its interval (None: never, on that side)."""
        grid = self.largest * SEARCH_FACTORS
        mean = sum(w * _curve(s, self.points[s], grid)[0] for s, w in self.weights.items())
        mean = np.maximum(mean, self.train_floor)
        point = _first_crossing(grid, mean[None], target)[0]
        size = _first_crossing(grid, self.replicas(grid), target)
        tail = (1 - LEVEL) / 2
        low, high = (float(v) for v in np.quantile(size, [tail, 1 - tail]))
        return (
            (float(point) if point < NEVER else None),
            (low if low < NEVER else None),
            (high if high < NEVER else None),
        )


def _first_crossing(grid: np.ndarray, curves: np.ndarray, target: float) -> np.ndarray:
    """Per row, the size where the curve first reaches ``target`` (log-interpolated); NEVER
    where it does not within the grid."""
    below = curves <= target
    first = np.where(below.any(1), below.argmax(1), -1)
    out = np.full(len(curves), NEVER)
    for row in np.flatnonzero(first >= 0):
        k = first[row]
        if k == 0:
            out[row] = grid[0]
            continue
        e0, e1 = curves[row, k - 1], curves[row, k]
        t = (e0 - target) / (e0 - e1) if e0 > e1 else 1.0
        out[row] = float(np.exp(np.log(grid[k - 1]) + t * (np.log(grid[k]) - np.log(grid[k - 1]))))
    return out


def _estimate(point: float, reps: np.ndarray) -> Estimate:
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return Estimate(
        round(float(point), 4), round(float(min(low, point)), 4), round(float(max(high, point)), 4)
    )


@dataclass(frozen=True)
class Fall:
    """How much the dev error fell over the last doubling of the measured sizes.

    ``value`` is the mean over folds of each fold's fall from ``start`` to ``end`` training
    examples; ``low`` its one-sided lower bound at the interval's tail (Student's t over the
    folds, never narrower than the noise of the dev rows whose answer changed).
    """

    start: int
    end: int
    value: float
    low: float

    def least_gain(self, factor: float) -> float:
        """The least that ``factor`` times today's data gains, given the fall measured.

        If the error above its floor falls as ``n^-b`` (or, like the plateau shape, ever
        faster towards such a tail), with ``b`` at most ``MAX_EXPONENT``, then a fall ``D``
        over a ratio ``q`` of sizes leaves at least ``D / (q^b - 1)`` above the floor, of which
        ``factor`` times the data removes the share ``1 - factor^-b``: the ratio of the two
        shrinks as ``b`` grows, so ``b = MAX_EXPONENT`` gives the least.
        """
        if self.low <= 0 or factor <= 1:
            return 0.0
        b, q = MAX_EXPONENT, self.end / self.start
        return float(self.low * (1 - factor**-b) / (q**b - 1))


def fall(
    sizes: np.ndarray,
    dev_by_fold: np.ndarray,
    dev_rows: int,
    span: float = FALL_SPAN,
    *,
    wrong: np.ndarray | None = None,
) -> Fall | None:
    """The measured fall of dev error over the last ``span`` times the largest size (the
    measured size nearest ``largest / span`` in log size to the largest); None with one size.

    With ``wrong`` (repeats, sizes, rows) from two passes or more, its noise is read from the
    rows and the passes (see :func:`_repeated_margin`)."""
    sizes = np.asarray(sizes, float)
    if len(sizes) < 2:
        return None
    first = int(np.argmin(np.abs(np.log(sizes[:-1]) - np.log(sizes[-1] / span))))
    tail = 1 - (1 - LEVEL) / 2
    if wrong is not None and len(wrong) >= 2:
        changes = np.asarray(wrong[:, first], float) - np.asarray(wrong[:, -1], float)
        value = float(changes.mean())
        margin = _repeated_margin(changes, tail)
        return Fall(int(sizes[first]), int(sizes[-1]), round(value, 4), round(value - margin, 4))
    drops = dev_by_fold[:, first] - dev_by_fold[:, -1]
    folds = len(drops)
    value = float(drops.mean())
    rows = max(dev_rows, 1)
    if folds >= 3:
        # Both errors are measured on the same dev rows, so the fall's noise is that of the
        # rows whose answer changed: at least |fall| of them (McNemar), whatever the folds say.
        changed = min(max(abs(value), 1.0 / rows), 1.0)
        paired = math.sqrt((changed - value**2) / rows)
        spread = max(float(drops.std(ddof=1)) / math.sqrt(folds), paired)
        margin = _t_quantile(tail, folds - 1) * spread
    else:  # no fold spread to read: both ends' binomial noise, as if independent
        ends = np.clip(dev_by_fold.mean(0)[[first, -1]], 0.01, 0.99)
        margin = NormalDist().inv_cdf(tail) * float(np.sqrt((ends * (1 - ends)).sum() / rows))
    return Fall(int(sizes[first]), int(sizes[-1]), round(value, 4), round(value - margin, 4))


def _repeated_margin(changes: np.ndarray, tail: float) -> float:
    """Margin below a fall measured in several passes over the same dev rows.

    ``changes`` is (passes, rows): each row's change of answer between the two sizes (1: wrong
    at the smaller, right at the larger; -1: the reverse).
    Two noises add up: the dev rows' (each row's change averaged over the passes, their
    spread over √rows) and the training draws' (each pass's mean, their spread over
    √passes, with Student's t). Each row's average still holds a little of the training
    noise, so the sum counts that part twice: a little wide rather than narrow.
    """
    passes, rows = changes.shape
    by_rows = float(changes.mean(0).var(ddof=1)) / rows
    by_passes = float(changes.mean(1).var(ddof=1)) / passes
    z = NormalDist().inv_cdf(tail)
    return math.sqrt(z * z * by_rows + _t_quantile(tail, passes - 1) ** 2 * by_passes)


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal one; within 1% of the
    exact value from 2 degrees of freedom at the 90th percentile; exact at 1, Cauchy's)."""
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    z = NormalDist().inv_cdf(p)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def bootstrap(
    sizes: list[int] | np.ndarray,
    dev_by_fold: np.ndarray,
    *,
    dev_rows: int | None = None,
    replicates: int = REPLICATES,
    seed: int = 0,
    train_error: float = 0.0,
    wrong: np.ndarray | None = None,
) -> Bootstrap | None:
    """Fit the curve's shapes, weigh them by how well they extrapolated on the measured sizes,
    and fit ``replicates`` resampled curves (folds, or with ``wrong`` from two passes or more
    rows and passes, and sizes with replacement)."""
    sizes = np.asarray(sizes, float)
    dev_by_fold = np.atleast_2d(np.asarray(dev_by_fold, float))
    n_folds, n_sizes = dev_by_fold.shape
    if n_sizes < 3:
        return None
    mean = dev_by_fold.mean(0)
    rows = (
        dev_rows if dev_rows is not None else int(round(sizes[-1] * n_folds / max(n_folds - 1, 1)))
    )
    # Inverse-variance weights (every size is measured on the same dev rows, so a lower error
    # is a more precise one: binomial noise), times the size: the shapes are approximations,
    # and the points nearest the extrapolation say most about it (on the benchmark's curves
    # the mean absolute error at the whole dataset fell 0.0234 -> 0.0218).
    clipped = np.clip(mean, 0.01, 0.99)
    variance = clipped * (1 - clipped) / max(rows, 1)
    precision = (sizes / variance) / np.mean(sizes / variance)
    ones = precision[None]
    points = {shape: fit(sizes, mean[None], ones) for shape, fit in _FITS.items()}
    weights, spread = _shape_weights(sizes, mean, precision, variance)
    law = PowerLaw(*(float(v) for v in points[POWER_LAW][0]))
    rng = np.random.default_rng(seed)
    repeated = wrong is not None and len(wrong) >= 2
    if repeated:
        errors = _crossed(np.asarray(wrong, float), replicates, rng)  # (B, S)
    else:
        picks = rng.integers(0, n_folds, (replicates, n_folds))
        errors = dev_by_fold[picks].mean(1)  # (B, S)
    drawn = np.stack(
        [
            np.bincount(rng.integers(0, n_sizes, n_sizes), minlength=n_sizes)
            for _ in range(replicates)
        ]
    ).astype(float)
    drawn[(drawn > 0).sum(1) < 3] = 1.0
    names = list(weights)
    pick = np.array(names)[rng.choice(len(names), replicates, p=list(weights.values()))]
    params = {
        shape: _FITS[shape](sizes, errors, drawn * precision[None]) if (pick == shape).any()
        else np.zeros((replicates, points[shape].shape[1]))
        for shape in names
    }  # fmt: skip
    shift = rng.standard_normal(replicates)
    return Bootstrap(
        law, weights, points, params, pick, shift, spread, float(sizes[-1]),
        errors[:, -1], float(mean[-1]), rows, seed, float(train_error),
        fall(sizes, dev_by_fold, rows, wrong=wrong if repeated else None),
    )  # fmt: skip


def _crossed(wrong: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(B, S) mean dev errors of curves resampled over rows and passes at once.

    The passes share their dev rows, so resampling their folds as if independent would count
    the rows' noise once per pass. Instead each replicate draws the rows (the dev set's noise)
    and the passes (the training draws' noise) with replacement, crossed: a little wide rather
    than narrow (McCullagh 2000, "Resampling and exchangeable arrays", Bernoulli 6).
    """
    repeats, _, rows = wrong.shape
    by_pass = rng.multinomial(repeats, np.full(repeats, 1 / repeats), replicates)
    by_row = rng.multinomial(rows, np.full(rows, 1 / rows), replicates)
    return np.einsum("br,rsn,bn->bs", by_pass, wrong, by_row) / (repeats * rows)


def _shape_weights(
    sizes: np.ndarray, mean: np.ndarray, precision: np.ndarray, variance: np.ndarray
) -> tuple[dict[str, float], float]:
    """Each shape's weight, and the extrapolation error per unit of log-distance.

    Each shape is fitted on all but the ``HOLD_OUT`` largest sizes and scored on those (in
    units of their measurement noise) plus 2 per free parameter (Akaike's criterion); weights
    are ``exp(-score / 2)``, a likelihood of what it predicted, penalised for flexibility. How
    fast the extrapolation error grows: the weighted shapes, fitted on the 3, 4, ... smallest
    sizes, each predict the largest; the root mean square of those misses per unit of
    log-distance. With fewer than ``3 + HOLD_OUT`` sizes nothing can be scored: the power law
    with floor alone, no spread.
    """
    fit_on = len(sizes) - HOLD_OUT
    if fit_on < 3:
        return {POWER_LAW: 1.0}, 0.0
    scores = {}
    for shape, fit in _FITS.items():
        params = fit(sizes[:fit_on], mean[None, :fit_on], precision[None, :fit_on])
        guess = _curve(shape, params, sizes[fit_on:])[0]
        scores[shape] = float(((guess - mean[fit_on:]) ** 2 / variance[fit_on:]).sum())
        scores[shape] += 2.0 * PARAMETERS[shape]  # Akaike's price of each free parameter
    best = min(scores.values())
    raw = {shape: math.exp(-0.5 * (score - best)) for shape, score in scores.items()}
    total = sum(raw.values())
    weights = {shape: w / total for shape, w in raw.items()}
    # The averaged shapes' miss at the largest size, fitted on the 3, 4, ... smallest sizes:
    # one miss per reach, each per unit of log-distance, pooled as a root mean square (one
    # miss alone is mostly the measurement noise of one point).
    rates = []
    for upto in range(3, len(sizes)):
        guess = sum(
            w * _curve(s, _FITS[s](sizes[:upto], mean[None, :upto], precision[None, :upto]),
                       sizes[-1:])[0, 0]
            for s, w in weights.items()
        )  # fmt: skip
        rates.append((guess - mean[-1]) / math.log(sizes[-1] / sizes[upto - 1]))
    return weights, float(np.sqrt(np.mean(np.square(rates))))


def learning_curve(
    data: Dataset,
    *,
    target_error: float | None = None,
    folds: int = 5,
    n_sizes: int = 6,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    repeats: int | None = None,
) -> LearningCurve:
    """Measure the curve on ``data`` and judge whether more data reaches ``target_error``."""
    sizes, train, dev, wrong = measure(
        data, folds=folds, n_sizes=n_sizes, spec=spec, config=config, progress=progress,
        repeats=repeats,
    )  # fmt: skip
    return judge(sizes, train.mean(0), dev, target_error, dev_rows=len(data.y), wrong=wrong)


class Measured(NamedTuple):
    """What :func:`measure` measured; ``train`` and ``dev`` are (repeats x folds, sizes),
    one row per fold of each pass, pass after pass."""

    sizes: list[int]
    train: np.ndarray
    dev: np.ndarray
    #: (repeats, sizes, rows): whether each row's answer was wrong, in each pass, from the
    #: model of the fold that held it out.
    wrong: np.ndarray


def measure(
    data: Dataset,
    *,
    folds: int = 5,
    n_sizes: int = 6,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    sizes: list[int] | None = None,
    repeats: int | None = None,
) -> Measured:
    """Train and dev error of every fold at every size, in ``repeats`` passes of the folds,
    each with its own folds and nested subsets. The default is :func:`repeats_for` the rows
    for the models that train as one batched ensemble, and one pass for the others (a CNN or
    a user's model trains member after member: every pass would cost as much as the first).

    ``sizes`` (ascending, at most the pool each fold leaves) replaces the default spacing.
    """
    spec = spec or ModelSpec()
    config = config or TrainConfig()
    repeats = repeats or (repeats_for(len(data.y)) if spec.vectorizable else 1)
    passes = [stratified_folds(data.y, folds, config.seed + r) for r in range(repeats)]
    dev_masks = [dev for masks_of_pass in passes for dev in masks_of_pass]
    pool = len(data.y) - max(int(m.sum()) for m in dev_masks)
    sizes = list(sizes) if sizes else training_sizes(pool, data.n_classes, n_sizes)
    masks, owners = [], []
    for r in range(repeats):
        order = _stratified_order(data.y, config.seed + r)
        for fold in range(folds):
            ranked = order[~dev_masks[r * folds + fold][order]]
            for size in sizes:
                mask = np.zeros(len(data.y), bool)
                mask[ranked[:size]] = True
                masks.append(mask)
                owners.append((r * folds + fold, size))
    if progress:
        progress.stage_step("sizes", 0, len(sizes), sizes=sizes)
    tick = progress.ticker("epoch") if progress else None
    probs = fit_predict(
        data.X, data.y, np.array(masks), data.n_classes, spec, config,
        image_shape=data.image_shape, tick=tick,
    )  # fmt: skip
    wrong = probs.argmax(-1) != data.y[None]
    train = np.zeros((len(dev_masks), len(sizes)))
    dev = np.zeros((len(dev_masks), len(sizes)))
    rows = np.zeros((repeats, len(sizes), len(data.y)), bool)
    for m, (fold, size) in enumerate(owners):
        j, held = sizes.index(size), dev_masks[fold]
        train[fold, j] = wrong[m][masks[m]].mean()
        dev[fold, j] = wrong[m][held].mean()
        rows[fold // folds, j, held] = wrong[m][held]
    return Measured(sizes, train, dev, rows)


def judge(
    sizes: list[int],
    train_error: np.ndarray,
    dev_by_fold: np.ndarray,
    target_error: float | None,
    *,
    dev_rows: int | None = None,
    seed: int = 0,
    wrong: np.ndarray | None = None,
) -> LearningCurve:
    """Fit the law with its bootstrap and turn it into a verdict (pure maths, no training).

    ``dev_by_fold`` is (folds, sizes), or one row of mean dev errors; ``wrong`` (repeats,
    sizes, rows), from :func:`measure`, lets the bootstrap and the fall read the repeats.
    """
    dev_by_fold = np.atleast_2d(np.asarray(dev_by_fold, float))
    train_error = np.asarray(train_error, float)
    dev_error = dev_by_fold.mean(0)
    boot = bootstrap(
        sizes, dev_by_fold, dev_rows=dev_rows, seed=seed, train_error=float(train_error[-1]),
        wrong=wrong,
    )  # fmt: skip
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
        found["shapes"] = {shape: round(w, 3) for shape, w in boot.weights.items()}
        found["fall"] = asdict(boot.fall) if boot.fall else None
        found["band"] = [
            {"size": int(n), **asdict(boot.predicted(n))}
            for n in largest * np.geomspace(1.0, BAND_FACTOR, 13)
        ]
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
        fell = _fell(boot.fall)
        if target is None:
            return WILL_HELP, HELPS, f"{Ten_x}, from {current:.3f}.{fell}", {}
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
                f"{LEVEL:.0%} interval {span}). {Ten_x}.{fell}",
                {"needed": needed, "needed_size": int(math.ceil(point))},
            )
        return (
            WILL_HELP,
            BEYOND_PRACTICAL,
            f"More data helps but does not reach the target at a practical size. {Ten_x}; the "
            f"target {target:.3f} needs more than {MAX_PRACTICAL_FACTOR:.0f}x today's data "
            f"({_levels_off(boot.asymptote().value, target)}).{fell}",
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


def _fell(measured: Fall | None) -> str:
    """The measured fall a "will help" rests on, when it sets the gain's lower end."""
    if measured is None or measured.low <= 0:
        return ""
    return (
        f" Measured: dev error fell by {measured.value:.3f} from {measured.start:,} to "
        f"{measured.end:,} training examples (at least {measured.low:.3f} at "
        f"{1 - (1 - LEVEL) / 2:.0%} confidence)."
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
