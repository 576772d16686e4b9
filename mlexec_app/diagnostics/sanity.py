"""Sanity checks before trusting any curve: overfit a small batch, find a learning rate."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.networks import ModelSpec, build_model
from mlexec_app.diagnostics.progress import Progress
from mlexec_app.diagnostics.runtime import device, torch_module
from mlexec_app.diagnostics.training import standardize_stats


@dataclass(frozen=True)
class OverfitCheck:
    """Could the model drive training loss near zero on a few examples?"""

    passed: bool
    batch_size: int
    steps: int
    initial_loss: float
    final_loss: float
    train_accuracy: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LearningRateRange:
    """Loss as the learning rate grows exponentially, and the range worth using."""

    learning_rates: list[float]
    losses: list[float]
    suggested_min: float
    suggested_max: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def overfit_small_batch(
    data: Dataset,
    spec: ModelSpec | None = None,
    *,
    batch_size: int = 32,
    steps: int = 300,
    lr: float = 1e-2,
    loss_threshold: float = 0.05,
    seed: int = 0,
    progress: Progress | None = None,
) -> OverfitCheck:
    """Train without regularisation on ``batch_size`` rows; the loss must fall near zero.

    A model that cannot memorise 32 examples has a bug (labels shuffled against inputs,
    a detached graph, a wrong loss) or far too little capacity.
    """
    torch = torch_module()
    torch.manual_seed(seed)
    rows = np.random.default_rng(seed).choice(len(data.y), min(batch_size, len(data.y)), False)
    xs, ys = _standardized(data, rows)
    model = build_model(spec or ModelSpec(), data.X.shape[1], data.n_classes, data.image_shape)
    model.to(device())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(model(xs), ys)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if progress and step % 50 == 49:
            progress.stage_step("step", step + 1, steps)
        if losses[-1] < loss_threshold / 10:
            break
    model.eval()
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(model(xs), ys))
        accuracy = float((model(xs).argmax(1) == ys).float().mean())
    passed = final < loss_threshold and accuracy == 1.0
    message = (
        f"Training loss fell to {final:.4f} on {len(rows)} examples: the model can learn."
        if passed
        else f"Training loss only fell to {final:.4f} (train accuracy {accuracy:.0%}) on "
        f"{len(rows)} examples: look for a bug (labels, loss, detached graph) or add capacity."
    )
    return OverfitCheck(
        passed, len(rows), len(losses), round(losses[0], 4), round(final, 4),
        round(accuracy, 4), message,
    )  # fmt: skip


def lr_range_test(
    data: Dataset,
    spec: ModelSpec | None = None,
    *,
    start_lr: float = 1e-5,
    end_lr: float = 10.0,
    steps: int = 100,
    batch_size: int = 64,
    seed: int = 0,
    progress: Progress | None = None,
) -> LearningRateRange:
    """Raise the learning rate exponentially each step and watch the smoothed loss.

    The suggested range runs from the rate where the loss falls fastest, divided by 3, to the
    rate where it is lowest, divided by 3; past it the loss climbs and then diverges.
    """
    torch = torch_module()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs, ys = _standardized(data, np.arange(len(data.y)))
    model = build_model(spec or ModelSpec(), data.X.shape[1], data.n_classes, data.image_shape)
    model.to(device())
    optimizer = torch.optim.Adam(model.parameters(), lr=start_lr)
    growth = (end_lr / start_lr) ** (1.0 / (steps - 1))
    rates, losses, smooth = [], [], 0.0
    model.train()
    for step in range(steps):
        lr = start_lr * growth**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = torch.from_numpy(rng.choice(len(data.y), min(batch_size, len(data.y)), False))
        rows = rows.to(xs.device)
        loss = torch.nn.functional.cross_entropy(model(xs[rows]), ys[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            break
        smooth = 0.8 * smooth + 0.2 * value  # debiased below, as Adam debiases its moments
        rates.append(lr)
        losses.append(smooth / (1 - 0.8 ** (step + 1)))
        if progress and step % 20 == 19:
            progress.stage_step("step", step + 1, steps)
        if step > 10 and losses[-1] > 4 * min(losses):
            break
    return suggest_range(rates, losses)


def suggest_range(rates: list[float], losses: list[float]) -> LearningRateRange:
    """Turn an LR-range curve into a suggested range (pure maths)."""
    log_rates = np.log10(rates)
    values = np.array(losses)
    best = int(np.argmin(values))
    slopes = np.gradient(values, log_rates) if len(values) > 2 else np.zeros(len(values))
    steepest = int(np.argmin(slopes[: best + 1])) if best > 0 else 0
    low, high = rates[steepest] / 3, rates[best] / 3
    low, high = min(low, high), max(low, high)
    message = (
        f"Loss falls fastest near lr={rates[steepest]:.2g} and is lowest near "
        f"lr={rates[best]:.2g}: use a learning rate between {low:.2g} and {high:.2g}."
    )
    if best == len(values) - 1:
        message += " The loss never rose: the test stopped before divergence; the top is a guess."
    return LearningRateRange(
        [float(f"{r:.4g}") for r in rates], [round(float(v), 4) for v in values],
        float(f"{low:.3g}"), float(f"{high:.3g}"), message,
    )  # fmt: skip


def _standardized(data: Dataset, rows: np.ndarray) -> tuple[Any, Any]:
    torch = torch_module()
    mask = np.zeros(len(data.y), bool)
    mask[rows] = True
    mean, scale = (a[0] for a in standardize_stats(data.X, mask[None]))
    xs = torch.from_numpy(((data.X[rows] - mean) / scale).astype(np.float32))
    return xs.to(device()), torch.from_numpy(data.y[rows]).to(device())
