"""The Durable Streams HTTP protocol as a door onto the session log (``/v1/stream/<name>``).

``protocol`` parses and formats the wire (headers, offsets, JSON mode, SSE frames, cursors),
``store`` is the stream service over the log's tables (create, fork, append, close, delete,
fork-aware reads), ``live`` waits for new entries on the channel layer, and ``views`` is the
thin door. The protocol is specified in durable-streams/durable-streams, PROTOCOL.md; what we
implement and how is in docs/sessions/durable-streams.md.
"""
