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
