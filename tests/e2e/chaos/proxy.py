"""A TCP proxy owned by the test, in front of several workers: each new connection goes to
the next worker that accepts it (round robin), so clients are spread over the workers and a
client that reconnects while a worker is down lands on another one."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from tests.e2e.servers import free_port

CHUNK = 65536


class BalancingProxy:
    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.turn = itertools.cycle(range(len(ports)))
        self.per_worker = [0] * len(ports)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    def start(self) -> BalancingProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.ports)):
            index = next(self.turn)
            try:
                pair = await asyncio.open_connection("127.0.0.1", self.ports[index])
            except OSError:
                continue  # that worker is down: the next one
            self.per_worker[index] += 1
            return pair
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._upstream()
        if upstream is None:
            writer.transport.abort()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
