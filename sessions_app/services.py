"""What every door shares: turning client events into log items, and publishing them.

Doors (WebSocket, REST, Durable Streams, AG-UI) parse their input, call these, and map
``SessionError`` to their own error form.
"""

from __future__ import annotations

from typing import Any

from sessions_app import log
from sessions_app.conf import setting
from sessions_app.domain.errors import BadEvent, BadRequest, LimitExceeded
from sessions_app.domain.events import encode_event, validate_event
from sessions_app.domain.producers import ProducerClaim
from sessions_app.runs import needs_data


def build_items(events: object) -> list[log.Item]:
    """Validate client events and encode them with the server time; one bad event refuses all."""
    if not isinstance(events, list) or not events:
        raise BadRequest("'events' must be a non-empty list")
    if len(events) > setting("MAX_EVENTS_PER_PUBLISH"):
        raise LimitExceeded(
            f"at most {setting('MAX_EVENTS_PER_PUBLISH')} events per publish", limit="events"
        )
    limit = setting("MAX_EVENT_BYTES")
    stamp = log.now_ms()
    items = []
    for index, raw in enumerate(events):
        try:
            event = validate_event(raw)
            body = encode_event(event, stamp)
        except BadEvent as exc:
            raise BadEvent(f"event {index}: {exc.message}", index=index, **exc.details) from exc
        if (len(body) if body.isascii() else len(body.encode())) > limit:
            raise LimitExceeded(
                f"event {index} is larger than {limit} bytes", limit="event_bytes", index=index
            )
        kind = event["type"]
        items.append(
            log.Item(
                body,
                kind,
                event.get("run", ""),
                data=event.get("data", {}) if needs_data(kind) else None,
                agent=event.get("agent", ""),
            )
        )
    return items


def parse_producer(raw: object) -> ProducerClaim | None:
    return None if raw is None else ProducerClaim.parse(raw)


def request(session_pk: int, events: object, producer: object = None) -> log.AppendRequest:
    return log.AppendRequest(session_pk, build_items(events), parse_producer(producer))


def ack(result: log.AppendResult) -> dict[str, Any]:
    from sessions_app.domain.offsets import format_offset

    return {"duplicate": result.duplicate, "offsets": [format_offset(seq) for seq in result.seqs]}
