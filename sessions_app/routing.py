"""WebSocket routing of sessions_app.

``websocket_application()`` is the app to put under ``"websocket"`` in your
``ProtocolTypeRouter``; or include ``websocket_urlpatterns`` in a router of your own.
"""

from __future__ import annotations

from typing import Any

from django.urls import path

from sessions_app.consumers import SessionConsumer

websocket_urlpatterns = [
    path("ws/sessions/", SessionConsumer.as_asgi(), name="sessions_app-ws"),
]


def websocket_application() -> Any:
    """The WebSocket ASGI app: origin validation, then token or cookie auth, then routing."""
    from channels.routing import URLRouter

    from sessions_app.auth import TokenAuthMiddleware
    from sessions_app.origins import OriginValidator

    return OriginValidator(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
