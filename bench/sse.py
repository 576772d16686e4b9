"""Server-sent events read incrementally: text as it arrives -> whole events (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SseEvent:
    event: str = "message"  # the ``event:`` field (SSE's default when absent)
    data: str = ""  # the ``data:`` lines, joined with newlines
    id: str | None = None


@dataclass
class SseReader:
    """Feed it text in pieces of any size; it returns the events each piece completes."""

    rest: str = field(default="", repr=False)

    def feed(self, text: str) -> list[SseEvent]:
        self.rest = (self.rest + text).replace("\r\n", "\n")  # a "\r" may end a piece
        *blocks, self.rest = self.rest.split("\n\n")
        events = []
        for block in blocks:
            event, data, seen = SseEvent(), [], False
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue  # a blank line or a comment (keep-alive)
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                    seen = True
                elif name == "event":
                    event.event, seen = value, True
                elif name == "id":
                    event.id = value
            if seen:
                event.data = "\n".join(data)
                events.append(event)
        return events
