"""WebSocket routing of sessions_app; include ``websocket_urlpatterns`` in your ASGI router."""

from __future__ import annotations

from typing import Any

from django.urls import path

websocket_urlpatterns: list[Any] = []


def websocket_application() -> Any:
    """The WebSocket ASGI app with origin validation and cookie authentication."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator

    return AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


__all__ = ["path", "websocket_application", "websocket_urlpatterns"]
