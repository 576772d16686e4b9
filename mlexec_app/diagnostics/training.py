"""Train many small models on many row subsets, and predict every row with each of them.

Every diagnostic that needs held-out predictions (k-fold out-of-fold probabilities, learning
curves over growing subsets) reduces to: given ``M`` boolean training masks over the same ``N``
rows, train one model per mask and return each model's class probabilities for all rows.
For the built-in MLP and logistic regression the ``M`` models train *at once*, as one batched
ensemble (weights stacked on a leading member axis, one batched matmul per layer): on a CPU
this is many times faster than a loop, because tiny models are dominated by per-step overhead.
Other models (the CNN, a user's factory) train one after another.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlexec_app.diagnostics.networks import ModelSpec, build_model
from mlexec_app.diagnostics.runtime import device, torch_module

#: Rows predicted at once by every member of an ensemble (bounds memory at M x rows x width).
PREDICT_ROWS = 2048

#: Called after every epoch as ``tick(epochs_done, epochs_total)``; may raise ``Cancelled``.
Tick = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every model a diagnostic trains."""

    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 0
    #: Tiny data sets get more steps per epoch, so that they are not left underfitted.
    min_steps: int = 300

    def steps_per_epoch(self, rows: int) -> int:
        return max(1, math.ceil(rows / self.batch_size), math.ceil(self.min_steps / self.epochs))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_predict(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    n_classes: int,
    spec: ModelSpec,
    config: TrainConfig,
    *,
    image_shape: tuple[int, ...] | None = None,
    tick: Tick | None = None,
) -> np.ndarray:
    """Train one model per row of ``masks`` and return probabilities of shape (M, N, K).

    Parameters
    ----------
    X, y:
        Features (N, D) and labels (N,) in ``0..K-1``.
    masks:
        (M, N) booleans: member ``m`` trains on the rows where ``masks[m]`` is true.
    """
    masks = np.atleast_2d(np.asarray(masks, dtype=bool))
    if spec.vectorizable:
        return _fit_ensemble(X, y, masks, n_classes, spec, config, tick)
    outputs = []
    for member, mask in enumerate(masks):
        outputs.append(
            _fit_one(X, y, mask, n_classes, spec, config, image_shape, member, len(masks), tick)
        )
    return np.stack(outputs)


def standardize_stats(X: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-member mean and scale of the member's training rows, shapes (M, 1, D).

    Features that are constant on a member's rows (digit pixels that are always blank) get
    scale 1, so they do not blow up on the rows where they are not.
    """
    # Matrix products keep memory at (M, D): never materialise an (M, N, D) array.
    weights = masks.astype(np.float64)
    count = np.maximum(weights.sum(1, keepdims=True), 1.0)
    X64 = np.asarray(X, dtype=np.float64)
    mean = weights @ X64 / count
    var = np.maximum(weights @ (X64**2) / count - mean**2, 0.0)
    scale = np.sqrt(var)
    scale[scale < 1e-3] = 1.0
    return mean[:, None].astype(np.float32), scale[:, None].astype(np.float32)


def _fit_ensemble(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    n_classes: int,
    spec: ModelSpec,
    config: TrainConfig,
    tick: Tick | None,
) -> np.ndarray:
    torch = torch_module()
    on = device()
    # Random draws stay on the CPU generator, so every device trains the same members.
    generator = torch.Generator().manual_seed(config.seed)
    mean, scale = (torch.from_numpy(a).to(on) for a in standardize_stats(X, masks))
    xs = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(on)
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(on)
    table, counts = _row_table(masks)
    table = table.to(on)
    net = _Ensemble(len(masks), X.shape[1], spec.layer_sizes, n_classes, spec.dropout, generator)
    net.to(on)
    # The fused kernel updates all the stacked tensors in one pass (about a tenth less CPU for
    # the label-issue search; the same flagged rows on the noisy digits).
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=config.lr, weight_decay=config.weight_decay,
        fused=str(on).partition(":")[0] in ("cpu", "cuda"),
    )  # fmt: skip
    # An epoch is one pass over the largest member's rows; every member draws a full batch of
    # its own rows at every step, so small training sets are not starved by large ones.
    steps_per_epoch = config.steps_per_epoch(int(counts.max()))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    shape = (len(masks), config.batch_size)
    for epoch in range(config.epochs):
        for _ in range(steps_per_epoch):
            draw = (torch.rand(shape, generator=generator) * counts).long()
            rows = torch.gather(table, 1, draw.to(on))
            logits = net((xs[rows] - mean) / scale, train=True)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, n_classes),
                ys[rows].reshape(-1),
                label_smoothing=config.label_smoothing,
            ) * len(masks)  # the sum of the members' mean losses: each member's own scale
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if tick is not None:
            tick(epoch + 1, config.epochs)
    with torch.no_grad():
        chunks = [
            torch.softmax(
                net((xs[None, start : start + PREDICT_ROWS] - mean) / scale, train=False), -1
            )
            for start in range(0, len(X), PREDICT_ROWS)
        ]
        return torch.cat(chunks, dim=1).cpu().numpy()


def _row_table(masks: np.ndarray) -> tuple[Any, Any]:
    """Each member's training rows, padded to a rectangle, and how many each has."""
    torch = torch_module()
    counts = masks.sum(1)
    if (counts == 0).any():
        raise ValueError("Every member needs at least one training row.")
    table = np.zeros((len(masks), int(counts.max())), dtype=np.int64)
    for member, mask in enumerate(masks):
        rows = np.flatnonzero(mask)
        table[member, : len(rows)] = rows
    return torch.from_numpy(table), torch.from_numpy(counts.astype(np.float32))[:, None]


class _Ensemble:
    """``M`` independent MLPs whose weights are stacked on a leading member axis."""

    def __init__(
        self,
        members: int,
        n_in: int,
        hidden: tuple[int, ...],
        n_out: int,
        dropout: float,
        generator: Any,
    ) -> None:
        torch = torch_module()
        self.dropout = dropout
        self.layers = []
        sizes = (n_in, *hidden, n_out)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Linear's default initialisation range
            weight = (torch.rand(members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            bias = (torch.rand(members, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.layers.append((weight.requires_grad_(), bias.requires_grad_()))

    def parameters(self) -> list[Any]:
        return [tensor for layer in self.layers for tensor in layer]

    def to(self, target: Any) -> None:
        self.layers = [
            (w.detach().to(target).requires_grad_(), b.detach().to(target).requires_grad_())
            for w, b in self.layers
        ]

    def __call__(self, x: Any, *, train: bool) -> Any:
        torch = torch_module()
        for index, (weight, bias) in enumerate(self.layers):
            x = torch.baddbmm(bias, x, weight)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
                if self.dropout and train:
                    x = torch.nn.functional.dropout(x, self.dropout, training=True)
        return x


def _fit_one(
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    n_classes: int,
    spec: ModelSpec,
    config: TrainConfig,
    image_shape: tuple[int, ...] | None,
    member: int,
    members: int,
    tick: Tick | None,
) -> np.ndarray:
    torch = torch_module()
    on = device()
    torch.manual_seed(config.seed + member)
    mean, scale = (a[0] for a in standardize_stats(X, mask[None]))
    xs = torch.from_numpy((np.asarray(X, dtype=np.float32) - mean) / scale).to(on)
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(on)
    rows = torch.from_numpy(np.flatnonzero(mask)).to(on)
    model = build_model(spec, X.shape[1], n_classes, image_shape).to(on)
    train_epochs(model, xs[rows], ys[rows], config, tick=_member_tick(tick, member, members))
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(xs), -1).cpu().numpy()


def train_epochs(
    model: Any, xs: Any, ys: Any, config: TrainConfig, tick: Tick | None = None
) -> None:
    """Plain minibatch AdamW with a one-cycle schedule on tensors already standardised."""
    torch = torch_module()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = config.steps_per_epoch(len(xs))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    model.train()
    for epoch in range(config.epochs):
        for rows in _batches(len(xs), config.batch_size, steps_per_epoch):
            loss = torch.nn.functional.cross_entropy(
                model(xs[rows]), ys[rows], label_smoothing=config.label_smoothing
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if tick is not None:
            tick(epoch + 1, config.epochs)


def _member_tick(tick: Tick | None, member: int, members: int) -> Tick | None:
    if tick is None:
        return None

    def inner(done: int, total: int) -> None:
        tick(member * total + done, members * total)

    return inner


def _batches(rows: int, batch_size: int, steps: int) -> list[Any]:
    """``steps`` minibatches of shuffled row indices, reshuffling after each full pass."""
    torch = torch_module()
    out: list[Any] = []
    while len(out) < steps:
        order = torch.randperm(rows).to(device())
        out += [order[s : s + batch_size] for s in range(0, rows, batch_size)]
    return out[:steps]
