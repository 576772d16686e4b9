"""How many bytes a WebSocket has queued for a client that is not reading them.

ASGI gives an application no way to see its socket's write buffer, and daphne (Twisted)
buffers without limit, so a client that stops reading would make the server's memory grow
without bound. We look through the ASGI ``send`` callable to the server's transport:

- daphne: ``send`` is ``partial(server.handle_reply, protocol)``; Twisted's transport keeps
  the unsent bytes in ``dataBuffer`` (from ``offset``) plus ``_tempDataLen``;
- uvicorn (and any asyncio server): the protocol's transport answers ``get_write_buffer_size()``.

Anything else answers None, and the limit is not enforced (e.g. the test communicator).
"""

from __future__ import annotations

from typing import Any


def _protocol(send: Any) -> Any:
    args = getattr(send, "args", None)
    if args:
        return args[0]
    return getattr(send, "__self__", None)


def buffered_bytes(send: Any) -> int | None:
    transport = getattr(_protocol(send), "transport", None)
    if transport is None:
        return None
    size = getattr(transport, "get_write_buffer_size", None)
    if callable(size):
        return int(size())
    data = getattr(transport, "dataBuffer", None)
    if data is None:
        return None
    return (
        len(data)
        - int(getattr(transport, "offset", 0))
        + int(getattr(transport, "_tempDataLen", 0))
    )


def send_may_block(send: Any) -> bool:
    """Whether awaiting ``send`` may wait for the client to read (asyncio servers such as
    uvicorn apply flow control there); daphne's Twisted transport buffers instead."""
    transport = getattr(_protocol(send), "transport", None)
    return getattr(transport, "dataBuffer", None) is None
