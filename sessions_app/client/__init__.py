"""Python agent SDK for durable sessions. Importable without Django (httpx + websockets).

    from sessions_app.client import SessionsClient

    async with SessionsClient("http://127.0.0.1:8000", api_key="dsk_…") as client:
        session = await client.session("chat-1")
        async with session.run(agent="writer") as run:
            for token in tokens:
                await run.text(token)          # coalesced into one append every ~30 ms
                if run.cancelled.is_set():     # a user pressed stop on any device
                    break

See docs/sessions/sdk.md.
"""

from sessions_app.client.connection import SessionsClient
from sessions_app.client.errors import ConnectionClosed, PublishError, RunCancelled
from sessions_app.client.session import Run, Session

__all__ = ["ConnectionClosed", "PublishError", "Run", "RunCancelled", "Session", "SessionsClient"]
