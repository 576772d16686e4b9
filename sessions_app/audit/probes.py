"""The delivery audit's probes: scripted, bounded requests to one chat endpoint.

No Django here (httpx and asyncio), so :func:`observe` runs from the management command, from
Python, or from a test. Every request goes to the URL given (or a path beside it that the
protocol defines: the AI SDK resume GET and stop, the AG-UI connect and cancel), through a
:class:`~sessions_app.tcp_proxy.TcpProxy` of the audit's own on loopback, so that the cut probe
can end the connection after a set number of bytes, as a network drop would.

What is sent, per protocol (and nothing else): three chat requests (the uninterrupted answer,
the answer that is cut, the answer that is stopped), the protocol's way back after the cut, a
second connection while the first answer streams, a fresh read after it, and the stop. Each
stream is bounded in time (``timeout``), bytes (``MAX_STREAM_BYTES``, ``MAX_EVENT_BYTES``)
and events (``MAX_EVENTS``); what the endpoint sends is parsed, never run, and kept trimmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from sessions_app.audit.readers import READERS, Held, SSEDecoder, SSEEvent, UpstreamError, size
from sessions_app.audit.reading import (
    EXCERPT,
    MAX_EVENTS,
    MAX_STREAM_BYTES,
    Reading,
    StreamTooLarge,
    record,
)
from sessions_app.audit.wsprobe import cancel as ws_cancel
from sessions_app.audit.wsprobe import read as ws_read
from sessions_app.domain.audit import (
    PROTOCOLS,
    STOP_TOO_LATE,
    Exchange,
    Observations,
    Stop,
    Stream,
)
from sessions_app.tcp_proxy import TcpProxy

CUT_SHARE = 0.4
# Protocols whose way back follows the answer live (AI SDK resume GET, AG-UI connect): the audit
# takes it at once, as their clients do. A plain SSE replay may only send what was stored, so
# the audit waits first for a generation that survived the cut to finish.
FOLLOWS_LIVE = {"aisdk", "agui", "ws"}
WS_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "api-key", "proxy-authorization"}


class AuditInputError(ValueError):
    """The audit cannot start: a bad URL, protocol or header (says how to fix it)."""


@dataclass(frozen=True)
class Target:
    """What to audit and how: the endpoint, its protocol, the credentials and the bounds."""

    url: str
    protocol: str = "sse"
    headers: dict[str, str] = field(default_factory=dict)
    prompt: str = "Explain in a few sentences why the sky is blue."
    thread: str = ""
    model: str = "gpt-4o-mini"
    timeout: float = 60.0
    settle: float | None = None

    def checked(self) -> Target:
        """This target, validated; raises :class:`AuditInputError`."""
        if self.protocol not in PROTOCOLS:
            raise AuditInputError(
                f"unknown protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}"
            )
        url = self.url
        if self.protocol == "ws":  # this project's WebSocket door: ws(s), or http(s) for it
            url = WS_SCHEMES.get(url.split(":", 1)[0].lower(), "") + url[url.find(":") :]
        parts = urlsplit(url)
        allowed = ("ws", "wss") if self.protocol == "ws" else ("http", "https")
        if parts.scheme not in allowed or not parts.hostname:
            raise AuditInputError(f"not a {' or '.join(allowed)} URL: {self.url!r}")
        if self.protocol == "ws" and not self.thread:
            raise AuditInputError("--protocol ws needs --thread: the name of an existing session")
        thread = self.thread or f"audit-{uuid.uuid4().hex[:12]}"
        return replace(self, url=url, thread=thread, timeout=max(1.0, min(self.timeout, 600.0)))


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> (name, value); raises :class:`AuditInputError`."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \r\n\t") or "\n" in value or "\r" in value:
        raise AuditInputError(f'a header is "Name: value", got {text!r}')
    return name, value.strip()


# --- the requests of each protocol ----------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def shown(self) -> str:
        """The request line for the report: secrets masked, body trimmed."""
        headers = ", ".join(
            f"{k}: {'***' if k.lower() in SECRET_HEADERS else v}" for k, v in self.headers.items()
        )
        body = f" {_trim(_compact(self.json), 160)}" if self.json is not None else ""
        return f"{self.method} {self.url}" + (f" [{headers}]" if headers else "") + body


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _beside(url: str, *segments: str) -> str:
    """``url`` with path segments added (the conventions of the AI SDK and AG-UI doors)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/" + "/".join(quote(s, safe="") for s in segments)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class Protocol:
    """The requests one protocol documents, built for a target."""

    def __init__(self, target: Target) -> None:
        self.t = target

    def chat(self, message_id: str) -> Request:
        t = self.t
        sse = {"Accept": "text/event-stream"}
        if t.protocol == "ws":
            return Request("WS", t.url, {"after": "now", "text": t.prompt, "message": message_id})
        if t.protocol == "aisdk":
            body: Any = {
                "id": t.thread,
                "messages": [
                    {
                        "id": message_id,
                        "role": "user",
                        "parts": [{"type": "text", "text": t.prompt}],
                    }
                ],
                "trigger": "submit-message",
            }
        elif t.protocol == "agui":
            body = {
                "threadId": t.thread,
                "runId": f"run-{message_id}",
                "messages": [{"id": message_id, "role": "user", "content": t.prompt}],
                "state": {},
                "tools": [],
                "context": [],
                "forwardedProps": {},
            }
        elif t.protocol == "openai":
            body = {
                "model": t.model,
                "stream": True,
                "messages": [{"role": "user", "content": t.prompt}],
            }
        else:
            body = {
                "id": t.thread,
                "thread_id": t.thread,
                "messages": [{"role": "user", "content": t.prompt}],
            }
        return Request("POST", t.url, body, sse)

    def resume(self, last_id: str, message_id: str) -> Request | None:
        """The protocol's own way back to an answer in progress, or None."""
        t = self.t
        if t.protocol == "ws":
            return Request("WS", t.url, {"after": last_id}) if last_id else None
        if t.protocol == "aisdk":
            return Request("GET", _beside(t.url, t.thread, "stream"))
        if t.protocol == "agui":
            headers = {"Last-Event-ID": last_id} if last_id else {}
            return Request("GET", _beside(t.url, t.thread, "connect"), None, headers)
        if t.protocol == "sse" and last_id:
            chat = self.chat(message_id)
            return replace(chat, headers={**chat.headers, "Last-Event-ID": last_id})
        return None

    def watch(self) -> Request | None:
        """A second connection to the same conversation while an answer streams, or None."""
        t = self.t
        if t.protocol == "ws":
            return Request("WS", t.url, {"after": "snapshot"})
        if t.protocol == "aisdk":
            return Request("GET", _beside(t.url, t.thread, "stream"))
        if t.protocol == "agui":
            return Request("GET", _beside(t.url, t.thread, "connect"))
        return None

    def fresh(self, first_id: str) -> Request | None:
        """A fresh client reading the finished answer, or None."""
        t = self.t
        if t.protocol == "ws":
            return Request("WS", t.url, {"after": "snapshot", "until": "caught_up"})
        if t.protocol == "agui":
            headers = {"Last-Event-ID": first_id} if first_id else {}
            return Request("GET", _beside(t.url, t.thread, "connect"), None, headers)
        return None

    def stop(self, run_id: str) -> Request | None:
        t = self.t
        if t.protocol == "ws":
            return Request("WS", t.url, {"cancel": run_id})
        if t.protocol == "aisdk":
            return Request("POST", _beside(t.url, t.thread, "stop"), {})
        if t.protocol == "agui":
            return Request(
                "POST", _beside(t.url, t.thread, "cancel"), {"runId": run_id} if run_id else {}
            )
        return None


# --- reading one stream ---------------------------------------------------------------------


class Session:
    """An audit's HTTP client, routed through its proxy, with the evidence it collects."""

    def __init__(self, target: Target, verify: bool | ssl.SSLContext = True) -> None:
        self.target = target
        self.verify = verify
        self.client = httpx.AsyncClient()  # replaced by each proxy() block's own
        self.exchanges: list[tuple[float, Exchange]] = []
        parts = urlsplit(target.url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)

    @contextlib.asynccontextmanager
    async def proxy(self) -> AsyncIterator[TcpProxy]:
        """A proxy of its own, and a client whose connections all end before the proxy does."""
        proxy = TcpProxy([(self.host, self.port)])
        await proxy.start_async()
        timeout = httpx.Timeout(self.target.timeout)
        try:
            async with httpx.AsyncClient(timeout=timeout, verify=self.verify) as client:
                self.client = client
                yield proxy
            for _ in range(50):  # let the connections end by themselves first
                if not proxy.open_connections:
                    break
                await asyncio.sleep(0.02)
        finally:
            await proxy.aclose()

    def _routed(
        self, request: Request, proxy: TcpProxy
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The request's URL through the proxy, keeping the Host header and TLS name."""
        parts = urlsplit(request.url)
        netloc = f"127.0.0.1:{proxy.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host = parts.netloc.rsplit("@", 1)[-1]
        headers = {**self.target.headers, **request.headers, "Host": host}
        extensions = {"sni_hostname": self.host} if parts.scheme == "https" else {}
        return url, headers, extensions

    async def read(
        self,
        request: Request,
        proxy: TcpProxy,
        held: Held,
        *,
        on_event: Any = None,
        seen: frozenset[str] = frozenset(),
        reading: Reading | None = None,
        trap: Any = None,
        probe: str = "",
    ) -> Reading:
        """Send ``request`` and read its answer as SSE, bounded; never raises for the
        endpoint's behaviour (the error is in the reading). Pass ``reading`` to watch it
        from another task while it fills."""
        reading = reading or Reading(held)
        reading.started = time.monotonic()
        try:
            async with asyncio.timeout(self.target.timeout):
                if request.method == "WS":
                    await ws_read(self, request, proxy, reading, seen, on_event)
                else:
                    await self._http(request, proxy, reading, on_event, seen)
        except TimeoutError:
            reading.error = f"no end within {self.target.timeout:.0f} s (the audit's bound)"
        except httpx.HTTPError as error:
            reading.error = _transport_error(error)
        except (StreamTooLarge, UpstreamError) as error:
            reading.error = str(error)
        reading.finished = time.monotonic()
        reading.cut = trap is not None and trap.fired.is_set()
        self.exchanges.append((reading.started, _exchange(request, reading, probe)))
        return reading

    async def _http(
        self, request: Request, proxy: TcpProxy, reading: Reading, on_event: Any, seen: Any
    ) -> None:
        reader = READERS[self.target.protocol]
        url, headers, extensions = self._routed(request, proxy)
        async with self.client.stream(
            request.method, url, json=request.json, headers=headers, extensions=extensions
        ) as response:
            reading.status = response.status_code
            reading.content_type = response.headers.get("content-type", "")
            reading.header_bytes = 16 + sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
            await self._body(response, reading, reader, on_event, seen)

    async def _body(
        self,
        response: httpx.Response,
        reading: Reading,
        reader: Any,
        on_event: Any,
        seen: frozenset[str],
    ) -> None:
        decoder = SSEDecoder()
        streaming = "text/event-stream" in reading.content_type.lower()
        async for chunk in response.aiter_raw():
            reading.body_bytes += len(chunk)
            if len(reading.excerpt) < EXCERPT:
                reading.excerpt += chunk[: EXCERPT - len(reading.excerpt)]
            if reading.body_bytes > MAX_STREAM_BYTES:
                raise StreamTooLarge(f"more than {MAX_STREAM_BYTES} bytes in one answer")
            if not streaming:
                continue
            for event in decoder.feed(chunk):
                self._event(reading, reader, event, seen)
                if on_event is not None:
                    on_event(reading)
                if reading.events >= MAX_EVENTS:
                    raise StreamTooLarge(f"more than {MAX_EVENTS} events in one answer")

    def _event(self, reading: Reading, reader: Any, event: SSEEvent, seen: frozenset[str]) -> None:
        record(reading, size(event), event.id, lambda: reader(reading.held, event), seen)


def _transport_error(error: httpx.HTTPError) -> str:
    name = type(error).__name__
    text = str(error) or "connection ended"
    return _trim(f"{name}: {text}", 300)


def _exchange(request: Request, reading: Reading, probe: str) -> Exchange:
    if reading.status is None:
        answer = reading.error or "no answer"
    else:
        parts = [f"HTTP {reading.status}", reading.content_type.split(";")[0] or "no content type"]
        if reading.events:
            parts.append(f"{reading.events} events, {len(reading.held.text)} characters of text")
        if reading.held.ended:
            why = f": {reading.held.why}" if reading.held.why else ""
            parts.append(f"ended ({reading.held.outcome or 'end marker'}{why})")
        if reading.cut:
            parts.append(f"cut by the audit after {reading.body_bytes} bytes of body")
        elif reading.error:
            parts.append(reading.error)
        answer = "; ".join(parts)
    excerpt = reading.excerpt.decode("utf-8", errors="replace")
    return Exchange(request.shown(), _trim(answer, 400), _trim(excerpt, EXCERPT), probe)


# --- the probes -----------------------------------------------------------------------------


def _new_id() -> str:
    return f"audit-{uuid.uuid4().hex[:16]}"


async def reachable(host: str, port: int, within: float = 5.0) -> str:
    """'' when ``host:port`` accepts a TCP connection, else why not."""
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as error:
        return f"cannot connect to {host}:{port} ({type(error).__name__}: {error})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ""


async def observe(target: Target, *, verify: bool | ssl.SSLContext = True) -> Observations:
    """Run every probe against ``target`` (already :meth:`Target.checked`); return what was seen."""
    session = Session(target, verify)
    problem = await reachable(session.host, session.port)
    if problem:
        return Observations(target.url, target.protocol, Stream(error=problem))
    return await Probes(session).run()


class Probes:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.protocol = Protocol(session.target)
        self.notes: list[str] = []

    async def run(self) -> Observations:
        s = self.s
        async with s.proxy() as proxy:
            base, watch, watch_offered = await self.baseline(proxy)
        obs = Observations(
            s.target.url, s.target.protocol, base.frozen(), watch_offered=watch_offered
        )
        if watch is not None:
            obs = replace(obs, watch=watch.frozen())
        if not obs.baseline.ok or not obs.baseline.text:
            return replace(obs, exchanges=self.evidence())
        obs = await self.fresh(obs)
        obs = await self.cut_and_resume(obs, base)
        obs = replace(obs, stop=await self.stop())
        return replace(obs, exchanges=self.evidence(), notes=tuple(self.notes))

    def evidence(self) -> tuple[Exchange, ...]:
        """The exchanges in the order their requests were sent."""
        return tuple(x for _, x in sorted(self.s.exchanges, key=lambda pair: pair[0]))

    async def baseline(self, proxy: TcpProxy) -> tuple[Reading, Reading | None, bool]:
        """The uninterrupted answer; a second connection joins once its text flows."""
        mine = _new_id()
        reading = Reading(Held(mine=mine))
        chat = asyncio.ensure_future(
            self.s.read(
                self.protocol.chat(mine), proxy, reading.held, reading=reading, probe="answer"
            )
        )
        watch_request = self.protocol.watch()
        watcher: Reading | None = None
        if watch_request is not None:
            if await _until(chat, lambda: reading.text_seen.is_set()):
                watcher = await self.s.read(watch_request, proxy, Held(mine=mine), probe="watch")
            else:
                self.notes.append("the answer ended before a second connection could join it")
        return await chat, watcher, watch_request is not None

    async def fresh(self, obs: Observations) -> Observations:
        request = self.protocol.fresh(obs.baseline.first_id)
        if request is None:
            return obs
        async with self.s.proxy() as proxy:
            reading = await self.s.read(request, proxy, Held(), probe="fresh")
        return replace(obs, fresh=reading.frozen(), fresh_offered=True)

    async def cut_and_resume(self, obs: Observations, base: Reading) -> Observations:
        """Cut the next answer at ~40% of the first one; wait; take the way back.

        Over plain HTTP the proxy passes 40% of the first answer's bytes and closes the
        connection right there (often inside an event). Over TLS the bytes on the wire are not
        the answer's (handshake, records), so the proxy resets the connection once the client
        has read 40% of the first answer's events.
        """
        mine = _new_id()
        chat = self.protocol.chat(mine)
        async with self.s.proxy() as proxy:
            if urlsplit(self.s.target.url).scheme in ("https", "wss"):
                trap: Any = EventCut(proxy, math.ceil(base.events * CUT_SHARE))
                cut = await self.s.read(
                    chat, proxy, Held(mine=mine), on_event=trap, trap=trap, probe="cut"
                )
            else:
                share = base.header_bytes + int(base.body_bytes * CUT_SHARE)
                trap = proxy.cut_after_bytes(max(1, share))
                cut = await self.s.read(chat, proxy, Held(mine=mine), trap=trap, probe="cut")
        obs = replace(obs, cut=cut.frozen(), cut_at=CUT_SHARE)
        if not cut.cut:
            self.notes.append("the second answer ended before the cut: delivery not judged")
            return replace(obs, cut=None)
        request = self.protocol.resume(cut.ids[-1] if cut.ids else "", _new_id())
        if request is None:
            return obs
        await asyncio.sleep(self._settle(obs))
        held = cut.held.copy()
        held.ended, held.outcome = False, ""
        async with self.s.proxy() as proxy:
            resumed = await self.s.read(
                request, proxy, held, seen=frozenset(cut.ids), probe="resume"
            )
        return replace(obs, resume=resumed.frozen(), resume_offered=True)

    def _settle(self, obs: Observations) -> float:
        """Long enough for a generation that survived the cut to finish (bounded)."""
        if self.s.target.settle is not None:
            return self.s.target.settle
        if self.s.target.protocol in FOLLOWS_LIVE:
            return 0.0  # come back at once, as the client would; the stream follows the run
        took = obs.baseline.duration_s or 1.0
        return min(max(0.5, took * 0.8), 15.0)

    async def stop(self) -> Stop | None:
        """Start an answer, stop it once its text flows, time the stream's end."""
        if self.protocol.stop("") is None:
            return Stop(offered=False)
        mine = _new_id()
        reading = Reading(Held(mine=mine))
        async with self.s.proxy() as proxy:
            chat = asyncio.ensure_future(
                self.s.read(
                    self.protocol.chat(mine), proxy, reading.held, reading=reading, probe="stop"
                )
            )
            if not await _until(chat, lambda: reading.held.text_events >= 3):
                await chat
                return Stop(True, None, STOP_TOO_LATE, reading.frozen())
            request = self.protocol.stop(reading.held.run_id)
            assert request is not None
            sent = time.monotonic()
            status, error = await self._send(request, proxy)
            stream = await chat
        took = (stream.finished - sent) if stream.finished is not None else None
        return Stop(True, status, error, stream.frozen(), took)

    async def _send(self, request: Request, proxy: TcpProxy) -> tuple[int | None, str]:
        sent = time.monotonic()
        if request.method == "WS":
            async with asyncio.timeout(min(self.s.target.timeout, 30.0)):
                status, error, body = await ws_cancel(self.s, request, proxy)
            answer = ("ack" if status == 200 else f"refused ({status})") if status else error
            self.s.exchanges.append((sent, Exchange(request.shown(), answer, body, "stop")))
            return status, error
        url, headers, extensions = self.s._routed(request, proxy)
        try:
            async with asyncio.timeout(min(self.s.target.timeout, 30.0)):
                response = await self.s.client.request(
                    request.method, url, json=request.json, headers=headers, extensions=extensions
                )
        except TimeoutError:
            self.s.exchanges.append(
                (sent, Exchange(request.shown(), "no answer within the bound", "", "stop"))
            )
            return None, "no answer within the bound"
        except httpx.HTTPError as error:
            self.s.exchanges.append(
                (sent, Exchange(request.shown(), _transport_error(error), "", "stop"))
            )
            return None, _transport_error(error)
        body = response.content[:EXCERPT].decode("utf-8", errors="replace")
        self.s.exchanges.append(
            (sent, Exchange(request.shown(), f"HTTP {response.status_code}", body, "stop"))
        )
        return response.status_code, ""


class EventCut:
    """Reset the proxy's connections once a reading has ``after`` events (the TLS cut)."""

    def __init__(self, proxy: TcpProxy, after: int) -> None:
        self.proxy = proxy
        self.after = max(1, after)
        self.fired = threading.Event()

    def __call__(self, reading: Reading) -> None:
        if reading.events >= self.after and not self.fired.is_set():
            self.fired.set()
            self.proxy.cut(0.0)


async def _until(task: asyncio.Future[Reading], ready: Any) -> bool:
    """Wait until ``ready()`` (True) or the task ends first (False)."""
    while not task.done():
        if ready():
            return True
        await asyncio.sleep(0.02)
    return False
