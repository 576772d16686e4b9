"""A round-robin TCP proxy for trying several ASGI workers on one machine (not for production:
use nginx, HAProxy or your cloud's load balancer; see deploy/nginx.conf).

    python deploy/tcp_proxy.py --listen 127.0.0.1:8000 127.0.0.1:8001 127.0.0.1:8002 127.0.0.1:8003

Each new connection (HTTP or WebSocket) goes to the next worker; no stickiness is needed,
because every worker reads the same log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import threading


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class RoundRobinProxy:
    def __init__(
        self, backends: list[tuple[str, int]], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.backends = itertools.cycle(backends)
        self.host, self.port = host, port
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        host, port = next(self.backends)
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pipe(client_reader, server_writer), _pipe(server_reader, client_writer)
        )

    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        async with self._server:
            await self._server.serve_forever()

    def start_in_thread(self) -> str:
        """Serve from a background thread; return the base URL."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.create_task(self.serve())
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(5)
        while self._server is None:
            threading.Event().wait(0.01)
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8000")
    parser.add_argument("backends", nargs="+", help="host:port of each worker")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    backends = [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1])) for b in args.backends]
    asyncio.run(RoundRobinProxy(backends, host, int(port)).serve())


if __name__ == "__main__":
    main()
