"""Origin validation for WebSockets: ``SESSIONS_APP["ALLOWED_ORIGINS"]`` or ALLOWED_HOSTS."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from django.conf import settings

from sessions_app.conf import setting


class OriginValidator(ChannelsOriginValidator):
    """Refuse browsers from other origins; clients that send no Origin (agents, SDKs) pass.

    A missing Origin is no risk here: browsers always send one, and cross-site WebSocket
    hijacking needs a browser carrying the victim's cookie.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        patterns = setting("ALLOWED_ORIGINS")
        if patterns is None:
            patterns = list(settings.ALLOWED_HOSTS)
        return any(p == "*" or self.match_allowed_origin(parsed_origin, p) for p in patterns)
