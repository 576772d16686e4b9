"""Lazy access to torch and the other heavy dependencies, and thread settings.

Nothing heavy is imported when ``mlexec_app`` loads: a site that never runs diagnostics need
not install torch. Each function that trains calls :func:`torch_module` first.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from mlexec_app.diagnostics.exceptions import TorchMissing

EXTRA_HINT = (
    "Install the mlexec extra: pip install torch==2.13.0 && pip install 'django-ai-stack[mlexec]'"
)


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`TorchMissing` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TorchMissing(f"mlexec diagnostics need '{module}'. {EXTRA_HINT}") from exc


def torch_module() -> ModuleType:
    """Return torch, with its CPU thread count set once for this process."""
    torch = require("torch")
    _configure_threads(torch)
    return torch


_threads_set = False
_device_name = "cpu"


def use_device(wanted: str | None) -> str:
    """Train on ``wanted`` from now on in this process; returns the device actually used.

    ``"auto"`` (and None) is CUDA when torch sees a GPU, else the CPU; anything else is a torch
    device string (``"cpu"``, ``"cuda:1"``, ``"mps"``), refused with ``ValueError`` if torch
    cannot use it here.
    """
    global _device_name
    torch = torch_module()
    if wanted in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        try:
            device = torch.device(str(wanted))
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"Unknown torch device {wanted!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Device {wanted!r} asked for, but torch sees no CUDA GPU here.")
        name = str(device)
    _device_name = name
    return name


def device() -> object:
    """The torch device every diagnostic trains on (``use_device`` picks it; CPU by default)."""
    return torch_module().device(_device_name)


def _configure_threads(torch: ModuleType) -> None:
    # One thread by default. These models are small, so intra-op parallelism gains little,
    # and OpenMP threads spin-wait badly when the cores are busy: the label-issue benchmark
    # took 5 s with one thread and 42 s with two on this 2-core machine while other
    # processes ran. A dedicated worker on an idle machine may raise MLEXEC_TORCH_THREADS.
    global _threads_set
    if _threads_set:
        return
    wanted = int(os.environ.get("MLEXEC_TORCH_THREADS", "1")) or (os.cpu_count() or 1)
    torch.set_num_threads(wanted)
    _threads_set = True
