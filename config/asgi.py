"""ASGI entry point of the demo site: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from sessions_app.routing import websocket_application  # noqa: E402
from sessions_app.streams.asgi import with_streams  # noqa: E402

http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": with_streams(http_app),  # /v1/stream/ before the site's middleware
        "websocket": websocket_application(),
    }
)

# What start-up made lives as long as the process: out of the collector's sight, the first full
# collection does not stall every socket of the worker for it.
gc.collect()
gc.freeze()
