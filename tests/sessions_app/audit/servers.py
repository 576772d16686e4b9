"""Small real chat servers for the delivery audit's tests, each served by uvicorn on loopback.

- ``plain_sse``: an SSE chat with no event ids (the common hand-written endpoint);
- ``sse_with_ids``: SSE with ids and ``Last-Event-ID`` support, whose generation dies when the
  client disconnects (the generation runs inside the response);
- ``agui_app``: a pydantic-ai agent behind ``AGUIAdapter.dispatch_request`` (pydantic-ai's own
  AG-UI server), with its offline ``FunctionModel``: one tool call, then paced text.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.servers import free_port

WORDS = (
    "A durable session keeps every token of an answer in an ordered log, so that a client"
    " which loses its connection can come back and continue where it stopped, and a second"
    " device can follow the same answer while it is written."
).split(" ")
PACE = 0.015


def tokens() -> list[str]:
    return [w + " " for w in WORDS[:-1]] + [WORDS[-1]]


def plain_sse() -> Starlette:
    async def chat(request: Request) -> Response:
        await request.json()

        async def body() -> AsyncIterator[str]:
            for token in tokens():
                yield f"data: {json.dumps({'delta': token})}\n\n"
                await asyncio.sleep(PACE)
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/chat", chat, methods=["POST"])])


class Generations:
    """The events each thread's latest generation wrote, and whether it finished."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[int, str]]] = {}
        self.done: dict[str, bool] = {}
        self.disconnects = 0


def sse_with_ids() -> Starlette:
    store = Generations()

    async def chat(request: Request) -> Response:
        body = await request.json()
        thread = str(body.get("thread_id", ""))
        last = request.headers.get("last-event-id")
        if last is not None and thread in store.events:
            return StreamingResponse(replay(thread, int(last)), media_type="text/event-stream")
        store.events[thread], store.done[thread] = [], False
        return StreamingResponse(generate(thread), media_type="text/event-stream")

    def frame(seq: int, data: str) -> str:
        return f"id: {seq}\ndata: {data}\n\n"

    async def generate(thread: str) -> AsyncIterator[str]:
        try:
            for seq, token in enumerate(tokens(), 1):
                data = json.dumps({"delta": token})
                store.events[thread].append((seq, data))
                yield frame(seq, data)
                await asyncio.sleep(PACE)
            store.done[thread] = True
            yield "data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            store.disconnects += 1  # the generation dies with the connection
            raise

    async def replay(thread: str, after: int) -> AsyncIterator[str]:
        for seq, data in list(store.events[thread]):
            if seq > after:
                yield frame(seq, data)
        if store.done[thread]:
            yield "data: [DONE]\n\n"

    app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
    app.state.store = store
    return app


def agui_app() -> Starlette:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
    from pydantic_ai.ui.ag_ui import AGUIAdapter

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        returned = any(
            isinstance(part, ToolReturnPart) for m in messages for part in getattr(m, "parts", [])
        )
        if not returned:
            yield {0: DeltaToolCall(name="lookup", json_args='{"topic": "sessions"}')}
            return
        for token in tokens():
            yield token
            await asyncio.sleep(PACE)

    agent = Agent(FunctionModel(stream_function=stream))

    @agent.tool_plain
    def lookup(topic: str) -> str:
        return f"notes on {topic}"

    async def run(request: Request) -> Response:
        return await AGUIAdapter.dispatch_request(request, agent=agent)

    return Starlette(routes=[Route("/agent", run, methods=["POST"])])


def misfits() -> Starlette:
    """What an audit must survive: JSON instead of a stream, a 401, hostile text."""
    from starlette.responses import JSONResponse, PlainTextResponse

    async def json_chat(request: Request) -> Response:
        return JSONResponse({"answer": "not streamed"})

    async def guarded(request: Request) -> Response:
        return PlainTextResponse("login first", status_code=401)

    async def hostile(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            for token in ["<script>alert(1)</script> ", "\x1b[2J&amp; ", "</pre><img src=x> "] * 8:
                yield f"data: {json.dumps({'delta': token})}\n\n"
                await asyncio.sleep(PACE)

        return StreamingResponse(body(), media_type="text/event-stream")

    async def huge(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            yield "data: " + "x" * (3 << 20) + "\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def endless(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            while True:
                yield f"data: {json.dumps({'delta': 'more '})}\n\n"
                await asyncio.sleep(PACE)

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/huge", huge, methods=["POST"]),
            Route("/endless", endless, methods=["POST"]),
            Route("/json", json_chat, methods=["POST"]),
            Route("/guarded", guarded, methods=["POST"]),
            Route("/hostile", hostile, methods=["POST"]),
        ]
    )


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and its key, in ``folder`` (cryptography: daphne's
    autobahn needs it, so it is there wherever sessions_app's extra is)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def openai_chat() -> Starlette:
    """An OpenAI-compatible chat completions endpoint (``stream: true``)."""

    async def completions(request: Request) -> Response:
        body = await request.json()
        assert body["stream"] is True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return (
                f"data: {json.dumps({'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"
            )

        async def stream() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            for token in tokens():
                yield chunk({"content": token})
                await asyncio.sleep(PACE)
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@contextmanager
def serve(app: Any, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yield its base URL
    (``https://localhost:...`` with ``tls``: a certificate and its key)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fixture server did not start")
        time.sleep(0.02)
    try:
        yield f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
