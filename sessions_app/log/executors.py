"""Where the log's database work runs for async code: threads, and the event loop's own
connection (``log.lanes``) for a lone plain append.

One writer thread serialises appends (so group commit batches them); a small pool serves
reads. Each thread keeps its own database connection open between calls, which saves a
connection per append; a connection that fails is closed so that the next call reconnects.
``shutdown()`` closes them all, the loops' connections too (tests call it before the test
database is dropped).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from sessions_app.domain.errors import Unavailable
from sessions_app.log.binding import bind, unpreparable
from sessions_app.log.lanes import close_all as close_loop_connections

T = TypeVar("T")

READ_THREADS = 4
_lock = threading.Lock()
_writer: ThreadPoolExecutor | None = None
_readers: ThreadPoolExecutor | None = None


def _executors() -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    global _writer, _readers
    with _lock:
        if _writer is None or _readers is None:
            _writer = ThreadPoolExecutor(1, thread_name_prefix="sessions-log-writer")
            _readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sessions-log-reader")
        return _writer, _readers


def guarded(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` on this thread's connection (bound on the server: ``log.binding``); an
    outage becomes ``Unavailable``."""
    try:
        bind(connections["default"])
        return fn(*args)
    except (OperationalError, InterfaceError) as exc:
        # The connection is probably gone (database restarted): reconnect next time.
        connections.close_all()
        raise Unavailable(f"the database did not answer: {exc}".strip()) from exc
    except DatabaseError as exc:
        connections.close_all()
        if unpreparable(exc):  # a pooler under us: nothing was written, send it again
            raise Unavailable("the database lost a prepared statement; try again") from exc
        raise
    finally:
        # These connections live long: with DEBUG on, Django would keep every statement.
        connections["default"].queries_log.clear()


async def run_write(fn: Callable[..., T], *args: Any) -> T:
    writer, _ = _executors()
    return await asyncio.get_running_loop().run_in_executor(writer, guarded, fn, *args)


async def run_read(fn: Callable[..., T], *args: Any) -> T:
    _, readers = _executors()
    return await asyncio.get_running_loop().run_in_executor(readers, guarded, fn, *args)


def _close_in_every_thread(executor: ThreadPoolExecutor, threads: int) -> None:
    # A barrier makes each of the pool's threads take exactly one of these tasks.
    barrier = threading.Barrier(threads)

    def close() -> None:
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        connections.close_all()

    for future in [executor.submit(close) for _ in range(threads)]:
        future.result()


def shutdown() -> None:
    """Close every connection the log holds (threads and event loops) and stop the threads."""
    global _writer, _readers
    with _lock:
        writer, readers, _writer, _readers = _writer, _readers, None, None
    close_loop_connections()
    if writer is not None and readers is not None:
        _close_in_every_thread(writer, 1)
        _close_in_every_thread(readers, READ_THREADS)
        writer.shutdown(wait=True)
        readers.shutdown(wait=True)
