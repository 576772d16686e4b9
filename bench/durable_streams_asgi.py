"""The demo site as bench/durable_streams.py serves it: the door on its fast path.

This is the deployment docs/sessions/durable-streams.md recommends (``with_streams`` around
the site's HTTP application); everything but ``/v1/stream/`` is the demo site unchanged.
"""

from __future__ import annotations

from channels.routing import ProtocolTypeRouter

from config.asgi import http_app
from sessions_app.routing import websocket_application
from sessions_app.streams.asgi import with_streams

application = ProtocolTypeRouter(
    {"http": with_streams(http_app), "websocket": websocket_application()}
)
