"""The diagnostics' names, apart from the code that runs them.

Django processes read these lists (job choices, forms) without importing numpy and the
diagnostics themselves: every process imports them when the admin loads.
"""

from __future__ import annotations

ALL = ("overfit_batch", "lr_range", "label_issues", "learning_curve", "baseline", "slices")
#: The full diagnosis: evidence on data quality, on more data, and the four error rates.
FULL = ("label_issues", "learning_curve", "baseline", "slices")
