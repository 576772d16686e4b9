"""Model factories a hostile or broken job might run, for the sandbox tests.

Imported by the diagnostics child process, which has no Django set up: import nothing of
Django's models here.
"""

from __future__ import annotations

import os
import signal
import time


def segfault(**kwargs):
    """Dies like native code with a bad pointer."""
    os.kill(os.getpid(), signal.SIGSEGV)


def endless(**kwargs):
    """Never returns (a runaway loop)."""
    while True:
        time.sleep(0.05)


def greedy(**kwargs):
    """Asks for 64 GiB at once."""
    return bytearray(64 * 1024**3)


def tiny(n_features, n_classes, image_shape=None):
    """A well-behaved factory: one linear layer."""
    import torch

    return torch.nn.Linear(n_features, n_classes)
