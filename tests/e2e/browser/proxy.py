"""A TCP proxy owned by the test, between the browser and the server, that can cut the network.

``cut(seconds)`` really kills the sockets: every open connection is reset and the listening
socket is closed, so new connections are refused, until ``seconds`` have passed. (Playwright's
``set_offline`` leaves an open WebSocket untouched, so it cannot test a reconnect.)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from typing import Any

from tests.e2e.servers import free_port

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = free_port()
        self.connections: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.refused_until = 0.0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TcpProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def cut(self, seconds: float) -> int:
        """Reset every connection and refuse new ones for ``seconds``; return how many died."""
        return self._call(self._cut(seconds))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True
        )

    async def _shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        self._reset_all()

    async def _cut(self, seconds: float) -> int:
        assert self.server is not None
        self.server.close()  # new connections are refused from now on
        self.server = None
        killed = self._reset_all()
        self.refused_until = time.monotonic() + seconds
        self.loop.call_later(seconds, lambda: asyncio.ensure_future(self._listen()))
        return killed

    def _reset_all(self) -> int:
        writers = list(self.connections)
        for writer in writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:  # RST instead of FIN: the peer sees the connection die
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.connections.clear()
        return len(writers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.connections.update(pair)
        await asyncio.gather(
            self._pipe(reader, up_writer, pair), self._pipe(up_reader, writer, pair)
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for end in pair:
                self.connections.discard(end)
                end.transport.abort()
