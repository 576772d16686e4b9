"""Errors raised by the diagnostics.

::

    DiagnosticsError
    ├── TorchMissing          (also an ImproperlyConfigured: the ``mlexec`` extra is missing)
    ├── DatasetError          a dataset could not be loaded or makes no sense
    ├── ModelSpecError        a model could not be built from its spec
    └── Cancelled             the job's cancel check said stop
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class DiagnosticsError(Exception):
    """Base class of every diagnostics error."""


class TorchMissing(DiagnosticsError, ImproperlyConfigured):
    """torch (or numpy, scikit-learn, cleanlab) is not installed."""


class DatasetError(DiagnosticsError, ValueError):
    """A dataset could not be loaded, or it cannot be used for classification."""


class ModelSpecError(DiagnosticsError, ValueError):
    """A model spec names an unknown kind or a factory that does not build a module."""


class Cancelled(DiagnosticsError):
    """The caller asked the diagnostics to stop; raised between epochs or folds."""
