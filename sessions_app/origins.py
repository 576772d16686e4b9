"""Origin validation for WebSockets: ``SESSIONS_APP["ALLOWED_ORIGINS"]`` or ALLOWED_HOSTS.

An origin is a scheme, a host and a port, and all three must match: ``http://example.com``
is not ``https://example.com``, nor ``https://example.com:8443``. A pattern with a scheme
(``https://chat.example.com``, ``https://.example.com`` for subdomains, an explicit port or the
scheme's default) names its origins outright. A pattern without one (every ``ALLOWED_HOSTS``
entry, when ``ALLOWED_ORIGINS`` is None) names hosts only: an origin on such a host is accepted
when its scheme and port are the socket's own (same-origin), as the browser reached this
server: ``wss``/``https`` when the connection is secure (``SECURE_PROXY_SSL_HEADER`` counts),
the port of its ``Host`` header.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from django.conf import settings
from django.http.request import split_domain_port

from sessions_app.conf import setting

DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _own_origin(scope: dict[str, Any]) -> tuple[str, int | None]:
    """The scheme and port the browser reached this socket at (port None: not known)."""
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name = proxy[0].removeprefix("HTTP_").lower().replace("_", "-").encode()
        forwarded = _header(scope, name)
        if forwarded is not None:
            scheme = "https" if forwarded.split(",")[0].strip() == proxy[1] else "http"
    host = _header(scope, b"host")
    if host is not None:
        _, port = split_domain_port(host)
        return scheme, int(port) if port.isdigit() else DEFAULT_PORTS[scheme]
    server = scope.get("server")
    return scheme, (server[1] if server and isinstance(server[1], int) else None)


class OriginValidator(ChannelsOriginValidator):
    """Refuse browsers from other origins; clients that send no Origin (agents, SDKs) pass.

    A missing Origin is no risk here: browsers always send one, and cross-site WebSocket
    hijacking needs a browser carrying the victim's cookie.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket":
            origin = _header(scope, b"origin")
            if origin is not None and not self.origin_allowed(origin, scope):
                return await self._deny(scope, receive, send)
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)

    async def _deny(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        from channels.security.websocket import WebsocketDenier

        return await WebsocketDenier()(scope, receive, send)

    def origin_allowed(self, origin: str, scope: dict[str, Any]) -> bool:
        parsed = urlparse(origin.strip().lower())
        try:
            port = parsed.port  # raises on a malformed port
        except ValueError:
            return False
        if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
            return False  # "null" (sandboxed pages, files) and anything that is not a web page
        port = port or DEFAULT_PORTS[parsed.scheme]
        patterns = setting("ALLOWED_ORIGINS")
        if patterns is None:
            patterns = list(settings.ALLOWED_HOSTS)
        own_scheme, own_port = _own_origin(scope)
        for pattern in patterns:
            if pattern == "*":
                return True
            if "://" in pattern:
                if self.match_allowed_origin(parsed, pattern):
                    return True
            elif self.match_allowed_origin(parsed, pattern):
                # A host only: the origin must be this socket's own scheme and port.
                if parsed.scheme == own_scheme and own_port in (None, port):
                    return True
        return False
