"""The TCP proxy, with real sockets on loopback: round robin, a dead worker skipped, cuts."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sessions_app.tcp_proxy import TcpProxy, main, parse_address

pytestmark = pytest.mark.engine_independent

ROOT = Path(__file__).resolve().parents[2]


async def echo_worker(name: bytes, port: int = 0) -> asyncio.Server:
    """A worker that says its name on connect, then echoes what it reads."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def first_bytes(port: int, n: int = 1) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await reader.readexactly(n)
    finally:
        writer.close()


async def until(condition: Callable[[], Awaitable[bool]], attempts: int = 200) -> None:
    for _ in range(attempts):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


@pytest.fixture
async def workers() -> AsyncIterator[list[asyncio.Server]]:
    servers = [await echo_worker(b"A"), await echo_worker(b"B")]
    yield servers
    for server in servers:
        server.close()


async def test_each_new_connection_goes_to_the_next_worker(workers):
    proxy = await TcpProxy([port_of(w) for w in workers]).start_async()
    try:
        names = [await first_bytes(proxy.port) for _ in range(4)]
    finally:
        await proxy.aclose()
    assert names == [b"A", b"B", b"A", b"B"]
    assert proxy.accepted == 4 and proxy.per_upstream == [2, 2]


async def test_bytes_pass_both_ways_unchanged(workers):
    proxy = await TcpProxy(port_of(workers[0])).start_async()
    payload = bytes(range(256)) * 1000
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(payload)
        echoed = await reader.readexactly(1 + len(payload))
        writer.close()
    finally:
        await proxy.aclose()
    assert echoed == b"A" + payload


async def test_a_dead_worker_is_skipped_and_used_again_once_back(workers):
    dead = closed_port()
    proxy = await TcpProxy(
        [f"127.0.0.1:{dead}", f"127.0.0.1:{port_of(workers[1])}"], down_for=0.05
    ).start_async()
    try:
        names = [await first_bytes(proxy.port) for _ in range(3)]
        assert names == [b"B", b"B", b"B"]  # no client saw the dead worker
        assert proxy.per_upstream == [0, 3]
        revived = await echo_worker(b"D", dead)
        try:
            seen: list[bytes] = []

            async def revived_gets_a_turn() -> bool:
                seen.append(await first_bytes(proxy.port))
                return seen[-1] == b"D"

            await until(revived_gets_a_turn)
        finally:
            revived.close()
    finally:
        await proxy.aclose()


async def test_a_worker_that_ends_the_connection_ends_it_for_the_client():
    async def say_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()
        writer.close()

    worker = await asyncio.start_server(say_bye, "127.0.0.1", 0)
    proxy = await TcpProxy(port_of(worker)).start_async()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.read(-1) == b"bye"  # then the end, the client still open

        async def gone() -> bool:
            return proxy.open_connections == 0

        await until(gone)
        writer.close()
    finally:
        await proxy.aclose()
        worker.close()


async def test_with_every_worker_down_the_client_connection_is_closed():
    proxy = await TcpProxy([closed_port(), closed_port()]).start_async()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            assert await reader.read(1) == b""
        except ConnectionResetError:
            pass
        writer.close()
    finally:
        await proxy.aclose()
    assert proxy.per_upstream == [0, 0]


async def test_a_cut_resets_open_connections_and_refuses_new_ones_until_it_ends(workers):
    proxy = await TcpProxy(port_of(workers[0])).start_async()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.readexactly(1) == b"A"
        assert proxy.cut(30) == 1
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await reader.readexactly(1)
        writer.close()
        assert not proxy.listening
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.resume()

        async def listening() -> bool:
            return proxy.listening

        await until(listening)
        assert await first_bytes(proxy.port) == b"A"  # same port as before the cut
    finally:
        await proxy.aclose()


async def test_a_cut_from_another_thread_ends_by_itself(workers):
    proxy = TcpProxy(port_of(workers[0])).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.readexactly(1) == b"A"
        assert await asyncio.to_thread(proxy.cut, 0.2) == 1
        writer.close()

        async def answers() -> bool:
            try:
                return await first_bytes(proxy.port) == b"A"
            except ConnectionError:
                return False

        await until(answers)
    finally:
        await asyncio.to_thread(proxy.stop)


async def test_a_holding_cut_keeps_new_connections_waiting_until_it_ends(workers):
    proxy = await TcpProxy(port_of(workers[0])).start_async()
    try:
        proxy.cut(30, hold=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.2)
        assert proxy.per_upstream == [0]  # the worker has not seen it yet
        proxy.resume()
        assert await reader.readexactly(1) == b"A"
        writer.close()
    finally:
        await proxy.aclose()


async def test_cut_after_bytes_ends_one_connection_exactly_there(workers):
    proxy = await TcpProxy(port_of(workers[0])).start_async()
    payload = b"x" * 10_000
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.readexactly(1) == b"A"  # before the trap: not counted
        trap = proxy.cut_after_bytes(4_000)
        writer.write(payload)
        received = await reader.read(-1)  # up to the end of the connection
        writer.close()
        assert received == payload[:4_000]
        assert trap.fired.is_set() and trap.upstream == ("127.0.0.1", port_of(workers[0]))

        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(payload)
        assert await reader.readexactly(1 + len(payload)) == b"A" + payload  # one cut only
        writer.close()
    finally:
        await proxy.aclose()


def test_addresses_are_read_or_refused():
    assert parse_address("10.0.0.1:8001") == ("10.0.0.1", 8001)
    assert parse_address("[::1]:8001") == ("::1", 8001)
    assert parse_address(8001) == ("127.0.0.1", 8001)
    for bad in ("8001", "host:", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
    with pytest.raises(SystemExit):
        main(["--listen", "nowhere", "127.0.0.1:8001"])


async def test_the_deploy_script_proxies_as_documented(workers):
    listen = closed_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "deploy" / "tcp_proxy.py"),
        "--listen",
        f"127.0.0.1:{listen}",
        f"127.0.0.1:{port_of(workers[0])}",
        f"127.0.0.1:{port_of(workers[1])}",
        cwd="/",  # the script finds the checkout itself
    )
    try:
        names: list[bytes] = []

        async def answers() -> bool:
            try:
                names.append(await first_bytes(listen))
            except ConnectionError:
                return False
            return True

        await until(answers, attempts=500)
        names.append(await first_bytes(listen))
        assert sorted(names) == [b"A", b"B"]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
