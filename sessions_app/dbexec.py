"""Where the log's database work runs for async code (``sessions_app.log.executors``).

Kept under this name for the code that imports it: ``run_read``, ``run_write``, ``shutdown``.
"""

from __future__ import annotations

from sessions_app.log.executors import READ_THREADS, guarded, run_read, run_write, shutdown

__all__ = ["READ_THREADS", "guarded", "run_read", "run_write", "shutdown"]
