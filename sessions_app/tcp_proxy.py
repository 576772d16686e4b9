"""A small TCP proxy: round robin over workers, skips a dead one, and cuts the network on demand.

For trying several ASGI workers on one machine and for tests that need a real network fault
(not for production: put nginx, HAProxy or your cloud's load balancer in front instead; see
deploy/nginx.conf). It imports no Django, so a test, a benchmark or a command-line tool can
start it anywhere::

    python -m sessions_app.tcp_proxy --listen 127.0.0.1:8000 127.0.0.1:8001 127.0.0.1:8002

From Python, in a background thread of its own::

    proxy = TcpProxy(["127.0.0.1:8001", "127.0.0.1:8002"]).start()
    proxy.url                 # http://127.0.0.1:<the port it picked>
    proxy.cut(2.0)            # reset every open connection, refuse new ones for 2 s
    proxy.cut_after_bytes(4000)  # the next connection to pass 4,000 bytes down is cut there
    proxy.stop()

or on a running event loop (``await proxy.start_async()`` ... ``await proxy.aclose()``).

What it does with each connection:

- **Round robin.** Each new connection (HTTP or WebSocket) goes to the next upstream. No
  stickiness is needed for this project's workers: every worker reads the same log.
- **A dead upstream is skipped.** A refused (or timed-out) connect tries the next upstream and
  marks the dead one down for ``down_for`` seconds, so the following connections do not wait
  on it; after that it gets its turn again. When every upstream is down, all are tried anyway
  (a worker back early is found); if none answers the client's connection is closed.
- **cut(seconds).** Every open connection is reset (RST, so the peer sees it die rather than a
  polite end) and new connections are refused until ``seconds`` have passed (``hold=True``
  accepts them but holds them until then, for a client that must see a connect hang).
  Playwright's ``set_offline`` leaves an open WebSocket alone, so a test of a reconnect needs
  this.
- **cut_after_bytes(n).** One connection, the first to pass ``n`` bytes towards its client from
  now on, is closed right after those ``n`` bytes: the client gets exactly ``n`` bytes and then
  the end of the connection in the middle of its answer (a worker dying mid-stream).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["ByteCut", "TcpProxy", "main", "parse_address"]

CHUNK = 65536
logger = logging.getLogger(__name__)
T = TypeVar("T")

Upstream = str | int | tuple[str, int]


def parse_address(value: Upstream, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"``, ``(host, port)`` or a bare port -> ``(host, port)``."""
    if isinstance(value, tuple):
        host, port = value
    elif isinstance(value, int):
        host, port = default_host, value
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        host, port = host.strip("[]") or default_host, int(port_text)
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return str(host), int(port)


@dataclasses.dataclass
class ByteCut:
    """A pending ``cut_after_bytes``: which connection it cut, and when (thread-safe to read)."""

    after: int
    fired: threading.Event = dataclasses.field(default_factory=threading.Event)
    upstream: tuple[str, int] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a connection has been cut (True), or ``timeout`` passed (False)."""
        return self.fired.wait(timeout)


class _Connection:
    """One client connection and its upstream: the two writers, and bytes sent downstream."""

    def __init__(self, client: asyncio.StreamWriter, upstream: tuple[str, int]) -> None:
        self.client = client
        self.upstream = upstream
        self.server: asyncio.StreamWriter | None = None
        self.downstream_bytes = 0

    def reset(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                _reset(writer)

    def close_after_delivery(self) -> None:
        """End the client side once what it was sent has left (FIN), drop the upstream side."""
        self.client.close()
        if self.server is not None:
            self.server.transport.abort()


def _is_pair(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:  # RST instead of FIN: the peer sees the connection die
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Round-robin TCP proxy over ``upstreams``, with cuts on demand (see the module docstring).

    Parameters
    ----------
    upstreams:
        Each ``"host:port"``, ``(host, port)`` or a port on ``host``.
    host, port:
        Where to listen; port 0 picks a free one (read ``port`` or ``url`` after starting).
    down_for:
        Seconds a refused upstream is left out of the rotation.
    connect_timeout:
        Seconds to wait for an upstream to accept before trying the next.
    """

    def __init__(
        self,
        upstreams: Sequence[Upstream] | Upstream,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        down_for: float = 1.0,
        connect_timeout: float = 3.0,
    ) -> None:
        if isinstance(upstreams, (str, int)) or _is_pair(upstreams):
            upstreams = [upstreams]  # type: ignore[list-item]
        self.upstreams = [parse_address(u, host) for u in upstreams]
        if not self.upstreams:
            raise ValueError("a proxy needs at least one upstream")
        self.host, self.port = host, port
        self.down_for = down_for
        self.connect_timeout = connect_timeout
        self.accepted = 0  # client connections accepted
        self.per_upstream = [0] * len(self.upstreams)  # connections each upstream took
        self._next = 0
        self._down_until = [0.0] * len(self.upstreams)
        self._connections: set[_Connection] = set()
        self._byte_cuts: list[ByteCut] = []
        self._server: asyncio.Server | None = None
        self._cut_until = 0.0
        self._held: asyncio.Event | None = None  # cleared while a cut holds new connections
        self._reopen: asyncio.TimerHandle | None = None
        self._relisten: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- what callers read ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        """False while a ``cut`` refuses new connections (and before start, after stop)."""
        return self._server is not None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Serve from a new background thread with its own event loop; return self."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start_async(), loop).result(timeout=10)
        return self

    async def start_async(self) -> TcpProxy:
        """Serve on the running event loop; return self once listening."""
        self._loop = asyncio.get_running_loop()
        await self._listen()
        return self

    def stop(self) -> None:
        """Close everything; with ``start()``, also stop its thread. Callable from any thread."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if thread is None:  # serving on the caller's loop: nothing here may wait for it
            self._run_on_loop(self._shut)
            self._loop = None
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._thread = None

    async def aclose(self) -> None:
        """Close everything and wait for the connections' tasks to end."""
        tasks = list(self._tasks)
        self._shut()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._loop = None

    async def serve_forever(self) -> None:
        """Listen on the running loop until cancelled (the command line)."""
        await self.start_async()
        try:
            await asyncio.Event().wait()
        finally:
            self._shut()

    # -- cuts -------------------------------------------------------------------------------

    def cut(self, seconds: float, *, hold: bool = False) -> int:
        """Reset every open connection and refuse new ones (or hold them, ``hold=True``) for
        ``seconds``; return how many connections were reset. Callable from any thread."""
        return self._run_on_loop(lambda: self._cut(seconds, hold))

    def cut_after_bytes(self, n: int) -> ByteCut:
        """Cut the first connection that passes ``n`` more bytes to its client, right after
        those bytes (the client receives exactly ``n``, then the connection ends)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        trap = ByteCut(after=n)

        def arm() -> None:
            for connection in self._connections:  # bytes count from now on
                connection.downstream_bytes = 0
            self._byte_cuts.append(trap)

        self._run_on_loop(arm)
        return trap

    def resume(self) -> None:
        """End a cut now: listen again and let held connections through."""
        self._run_on_loop(self._resume)

    # -- inside the loop --------------------------------------------------------------------

    def _run_on_loop(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the proxy is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as error:  # handed to the caller's thread
                future.set_exception(error)

        loop.call_soon_threadsafe(call)
        return future.result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _shut(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()
        for task in list(self._tasks):
            task.cancel()

    def _cut(self, seconds: float, hold: bool) -> int:
        self._cut_until = max(self._cut_until, time.monotonic() + seconds)
        if hold:
            self._held = self._held or asyncio.Event()
            self._held.clear()
        if not hold and self._server is not None:
            self._server.close()  # new connections are refused from now on
            self._server = None
        killed = self._reset_all()
        if self._reopen is not None:
            self._reopen.cancel()
        delay = self._cut_until - time.monotonic()
        self._reopen = asyncio.get_running_loop().call_later(delay, self._end_cut)
        return killed

    def _resume(self) -> None:
        self._cut_until = 0.0
        if self._reopen is not None:
            self._reopen.cancel()
        self._end_cut()

    def _end_cut(self) -> None:
        self._reopen = None
        if self._held is not None:
            self._held.set()
        if self._server is None and (self._relisten is None or self._relisten.done()):
            self._relisten = self._spawn(self._listen())

    def _reset_all(self) -> int:
        connections = list(self._connections)
        for connection in connections:
            connection.reset()
        self._connections.clear()
        return len(connections)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        if task is not None:  # stop() cancels it
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._held is not None:
            await self._held.wait()  # a cut with hold=True: wait for its end
        upstream = await self._connect()
        if upstream is None:
            _reset(writer)
            return
        index, (up_reader, up_writer) = upstream
        connection = _Connection(writer, self.upstreams[index])
        connection.server = up_writer
        self._connections.add(connection)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, connection, downstream=False),
                self._pipe(up_reader, writer, connection, downstream=True),
            )
        finally:
            self._connections.discard(connection)
            for end in (writer, up_writer):
                end.close()

    def _order(self) -> list[int]:
        """Upstream indexes to try: the rotation from the next one, those marked down last."""
        count = len(self.upstreams)
        start, self._next = self._next, (self._next + 1) % count
        rotation = [(start + i) % count for i in range(count)]
        now = time.monotonic()
        return [i for i in rotation if self._down_until[i] <= now] + [
            i for i in rotation if self._down_until[i] > now
        ]

    async def _connect(
        self,
    ) -> tuple[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None:
        for index in self._order():
            host, port = self.upstreams[index]
            try:
                pair = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self.connect_timeout
                )
            except (TimeoutError, OSError):
                self._down_until[index] = time.monotonic() + self.down_for
                continue
            self._down_until[index] = 0.0
            self.per_upstream[index] += 1
            return index, pair
        return None

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: _Connection,
        downstream: bool,
    ) -> None:
        """Copy one direction. The client's end is passed on (half-close: the worker may still
        answer); the worker's end ends the connection; an error kills both directions."""
        try:
            while data := await reader.read(CHUNK):
                trap = None
                if downstream:
                    data, trap = self._count_down(connection, data)
                writer.write(data)
                await writer.drain()
                if trap is not None:
                    trap.upstream = connection.upstream
                    self._end(connection)
                    trap.fired.set()
                    return
            if downstream:
                self._end(connection)
            elif writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            self._connections.discard(connection)
            connection.reset()

    def _end(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        connection.close_after_delivery()

    def _count_down(self, connection: _Connection, data: bytes) -> tuple[bytes, ByteCut | None]:
        """The part of ``data`` to send to the client, and the byte cut it fires, if any."""
        if self._byte_cuts:
            room = self._byte_cuts[0].after - connection.downstream_bytes
            if room <= len(data):
                connection.downstream_bytes += max(room, 0)
                return data[: max(room, 0)], self._byte_cuts.pop(0)
        connection.downstream_bytes += len(data)
        return data, None


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("tcp proxy: could not listen again after a cut", exc_info=task.exception())


def main(argv: Iterable[str] | None = None) -> None:
    """``python -m sessions_app.tcp_proxy --listen HOST:PORT UPSTREAM [UPSTREAM ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m sessions_app.tcp_proxy",
        description="Round-robin TCP proxy over several workers (skips a dead one); "
        "for trying things out, not for production.",
    )
    parser.add_argument("--listen", default="127.0.0.1:8000", help="host:port to listen on")
    parser.add_argument(
        "--down-for", type=float, default=1.0, help="seconds a refused worker is left out"
    )
    parser.add_argument("upstreams", nargs="+", help="host:port of each worker")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        host, port = parse_address(args.listen)
        upstreams = [parse_address(u) for u in args.upstreams]
    except ValueError as error:
        parser.error(str(error))
    proxy = TcpProxy(upstreams, host=host, port=port, down_for=args.down_for)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(proxy.serve_forever())


if __name__ == "__main__":
    main()
