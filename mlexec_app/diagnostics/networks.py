"""The torch networks of the diagnostics: logistic regression, MLP, small CNN, or a factory.

A :class:`ModelSpec` is plain data (it travels in a job's JSON parameters); :func:`build_model`
turns it into a fresh ``torch.nn.Module`` for a given input and class count. A user's factory
is named by dotted path and called as ``factory(n_features=..., n_classes=...,
image_shape=...)``; it must return a module mapping a float batch ``(B, n_features)`` to
logits ``(B, n_classes)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlexec_app.diagnostics.exceptions import ModelSpecError
from mlexec_app.diagnostics.runtime import require, torch_module

KINDS = ("logistic", "mlp", "cnn", "factory")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to train and how hard to regularise it."""

    kind: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.0
    factory: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            choices = ", ".join(KINDS)
            raise ModelSpecError(f"Unknown model kind {self.kind!r}; use one of {choices}.")
        if self.kind == "factory" and not self.factory:
            raise ModelSpecError("A 'factory' model needs the dotted path of its factory.")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @property
    def vectorizable(self) -> bool:
        """Whether many copies train at once as one batched ensemble (see ``training``)."""
        return self.kind in ("logistic", "mlp")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return () if self.kind == "logistic" else self.hidden

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelSpec:
        data = dict(data or {})
        if "hidden" in data:
            data["hidden"] = tuple(data["hidden"])
        return cls(**data)


def build_model(
    spec: ModelSpec, n_features: int, n_classes: int, image_shape: tuple[int, ...] | None = None
) -> Any:
    """A fresh, randomly initialised module for ``spec``."""
    nn = torch_module().nn
    if spec.kind == "factory":
        return _from_factory(spec, n_features, n_classes, image_shape)
    if spec.kind == "cnn":
        if image_shape is None:
            raise ModelSpecError("The 'cnn' model needs image data (an image_shape).")
        return _SmallCNN(image_shape, n_classes, spec.dropout)
    layers: list[Any] = []
    width = n_features
    for size in spec.layer_sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def _from_factory(
    spec: ModelSpec, n_features: int, n_classes: int, image_shape: tuple[int, ...] | None
) -> Any:
    module_loading = require("django.utils.module_loading")
    try:
        factory = module_loading.import_string(spec.factory)
    except ImportError as exc:
        raise ModelSpecError(f"Cannot import model factory {spec.factory!r}: {exc}") from exc
    model = factory(n_features=n_features, n_classes=n_classes, image_shape=image_shape)
    if not isinstance(model, torch_module().nn.Module):
        raise ModelSpecError(f"{spec.factory} returned {type(model).__name__}, not a torch Module.")
    return model


def _SmallCNN(image_shape: tuple[int, ...], n_classes: int, dropout: float) -> Any:  # noqa: N802
    """Two 3x3 convolutions, a pool, a linear head; reads flat rows and reshapes them."""
    nn = torch_module().nn
    channels, height, width = image_shape if len(image_shape) == 3 else (1, *image_shape)
    return nn.Sequential(
        nn.Unflatten(1, (channels, height, width)),
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(32 * 16, n_classes),
    )
