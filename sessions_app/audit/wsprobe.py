"""The audit's reading of this project's WebSocket door (docs/sessions/websocket.md).

A request here is one socket: ``hello``, then ``subscribe`` (``after``: ``now``, an offset, or
``snapshot``), and for a chat ``send_message``; the socket is read until the answer's run ends
(or, for a fresh read, until ``caught_up``). A stop is ``cancel`` on a socket of its own, as a
second device's stop button would send it. No Django here.
"""

from __future__ import annotations

import json
import ssl
from functools import partial
from typing import TYPE_CHECKING, Any

import websockets
from websockets.exceptions import InvalidStatus

from sessions_app.audit.readers import read_log, read_snapshot
from sessions_app.audit.reading import (
    EXCERPT,
    MAX_STREAM_BYTES,
    Reading,
    StreamTooLarge,
    record,
)

if TYPE_CHECKING:
    from sessions_app.audit.probes import Request, Session
    from sessions_app.tcp_proxy import TcpProxy

MAX_FRAME = 2 << 20
CODES = {"unauthenticated": 401, "not_found": 404, "forbidden": 403, "not_running": 409}


def _tls(verify: Any, url: str) -> Any:
    if not url.startswith("wss:"):
        return None
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _connect(session: Session, request: Request, proxy: TcpProxy) -> Any:
    """A socket to the URL's host name (Host header, TLS name) over the audit's proxy."""
    return websockets.connect(
        request.url,
        additional_headers=session.target.headers,
        host="127.0.0.1",
        port=proxy.port,
        ssl=_tls(session.verify, request.url),
        open_timeout=min(session.target.timeout, 30.0),
        max_size=MAX_FRAME,
        compression=None,
    )


async def read(
    session: Session, request: Request, proxy: TcpProxy, reading: Reading, seen: Any, on_event: Any
) -> None:
    """Fill ``reading`` from one socket; the endpoint's refusals end up in it, not raised."""
    plan = request.json or {}
    try:
        async with _connect(session, request, proxy) as ws:
            reading.status, reading.content_type = 101, "websocket"
            reading.header_bytes = 200  # the handshake's answer, near enough
            if not await _hello(ws, reading):
                return
            await _ask(ws, session.target.thread, plan)
            async for raw in ws:
                if _take(_frame(raw, reading), reading, plan, seen, on_event):
                    return
    except InvalidStatus as error:
        reading.status = error.response.status_code
        reading.error = f"the WebSocket handshake was refused (HTTP {reading.status})"
    except (OSError, websockets.exceptions.WebSocketException) as error:
        reading.error = f"{type(error).__name__}: {error}"[:300] or "connection ended"


async def _ask(ws: Any, thread: str, plan: dict[str, Any]) -> None:
    after = plan.get("after", "now")
    await ws.send(json.dumps({"op": "subscribe", "id": "s", "session": thread, "after": after}))
    if plan.get("text"):
        message = {"op": "send_message", "id": "m", "session": thread, "text": plan["text"]}
        await ws.send(json.dumps({**message, "message": plan.get("message")}))


def _take(
    frame: dict[str, Any], reading: Reading, plan: dict[str, Any], seen: Any, on_event: Any
) -> bool:
    """Fold one frame into ``reading``; True when the reading is over."""
    kind = frame.get("type")
    if kind == "events":
        for event in frame.get("events") or []:
            ident = event.get("offset") if isinstance(event, dict) else None
            record(
                reading, len(json.dumps(event)), ident, partial(read_log, reading.held, event), seen
            )
            if on_event is not None:
                on_event(reading)
    elif kind == "snapshot":
        fold = partial(read_snapshot, reading.held, frame.get("state"))
        record(reading, len(json.dumps(frame)), frame.get("offset"), fold, seen)
    elif kind == "caught_up" and plan.get("until") == "caught_up":
        return True
    elif kind == "error" and frame.get("id") in ("s", "m"):
        _refused(reading, frame)
        return True
    return reading.held.ended


async def _hello(ws: Any, reading: Reading) -> bool:
    frame = _frame(await ws.recv(), reading)
    if frame.get("type") == "hello":
        return True
    _refused(reading, frame)
    return False


def _frame(raw: Any, reading: Reading) -> dict[str, Any]:
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    reading.body_bytes += len(data) + 4
    if len(reading.excerpt) < EXCERPT:
        reading.excerpt += data[: EXCERPT - len(reading.excerpt)] + b"\n"
    if reading.body_bytes > MAX_STREAM_BYTES:
        raise StreamTooLarge(f"more than {MAX_STREAM_BYTES} bytes in one answer")
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return frame if isinstance(frame, dict) else {}


def _refused(reading: Reading, frame: dict[str, Any]) -> None:
    code = str(frame.get("code") or "error")[:60]
    reading.status = CODES.get(code, 400)
    reading.error = f"{code}: {str(frame.get('message') or '')[:200]}".rstrip(": ")


async def cancel(
    session: Session, request: Request, proxy: TcpProxy
) -> tuple[int | None, str, str]:
    """Send ``cancel`` on a socket of its own; (status-like code, error, the answer frame)."""
    plan = request.json or {}
    try:
        async with _connect(session, request, proxy) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "hello":
                return (
                    CODES.get(str(hello.get("code")), 400),
                    str(hello.get("code")),
                    json.dumps(hello)[:300],
                )
            frame = {"op": "cancel", "id": "c", "session": session.target.thread}
            if plan.get("cancel"):
                frame["run"] = plan["cancel"]
            await ws.send(json.dumps(frame))
            async for raw in ws:
                answer = json.loads(raw)
                if isinstance(answer, dict) and answer.get("id") == "c":
                    text = json.dumps(answer)[:300]
                    if answer.get("type") == "ack":
                        return 200, "", text
                    code = str(answer.get("code"))
                    return CODES.get(code, 400), "", text
    except InvalidStatus as error:
        return error.response.status_code, "", ""
    except (OSError, ValueError, websockets.exceptions.WebSocketException) as error:
        return None, f"{type(error).__name__}: {error}"[:300], ""
    return None, "the socket closed before the answer", ""
