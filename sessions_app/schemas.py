"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from ninja import Field, Schema

from sessions_app.domain.turns import CLAIM_MOST

NAME_PATTERN = r"^[A-Za-z0-9._~-]{1,200}$"
# A row's id as the caller sends it: the databases' ids are 64-bit, and a larger number would
# fail inside the query (an overflow, a 500) instead of being refused here.
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class ClaimIn(Schema):
    """What a worker asks for: the REST door's body and the WebSocket's ``claim`` frame."""

    agents: list[str] = Field(min_length=1, max_length=50)
    worker: str = Field(min_length=1, max_length=200)
    limit: int = Field(1, ge=1, le=CLAIM_MOST)
    wait: float = Field(0, ge=0, le=60)


class RenewIn(Schema):
    """Turns whose lease a worker pushes ahead: the REST door's body and the ``renew`` frame."""

    worker: str = Field(min_length=1, max_length=200)
    turns: list[RowId] = Field(max_length=500)


class ReleaseIn(Schema):
    """A turn a worker hands back: the REST door's body and the ``release`` frame."""

    worker: str = Field(min_length=1, max_length=200)
    turn: RowId


class ErrorOut(Schema):
    code: str = Field(description="Machine-readable error code, e.g. not_found, bad_event.")
    message: str


class SessionIn(Schema):
    name: str | None = Field(None, pattern=NAME_PATTERN, description="Omit for a generated name.")
    title: str = Field("", max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    members: list[str] = Field(default_factory=list, max_length=100, description="Usernames.")
    retention_days: int | None = Field(None, gt=0, le=36500)


class SessionPatch(Schema):
    title: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] | None = None
    closed: bool | None = Field(None, description="true closes the session for good.")


class SessionOut(Schema):
    name: str
    title: str
    metadata: dict[str, Any]
    owner: str | None
    members: list[str]
    head: str = Field(description="Offset of the last entry.")
    earliest: str = Field(description="Resume below this offset gets offset_expired.")
    closed: bool
    content_type: str
    created_at: datetime
    last_activity: datetime


class SessionList(Schema):
    items: list[SessionOut]
    count: int
    next_offset: int | None = Field(
        None, description="Where the next page starts (pass it as offset); null on the last."
    )


class MemberIn(Schema):
    username: str = Field(max_length=150)


class ProducerIn(Schema):
    id: str = Field(min_length=1, max_length=128)
    epoch: int = Field(0, ge=0, le=2**53 - 1)
    seq: int = Field(ge=0, le=2**53 - 1)


class PublishIn(Schema):
    events: list[dict[str, Any]] = Field(min_length=1)
    producer: ProducerIn | None = None


class AckOut(Schema):
    offsets: list[str]
    duplicate: bool
    message: str | None = None


class EventsOut(Schema):
    events: list[dict[str, Any]]
    next_offset: str = Field(description="Pass as `after` to continue.")
    head: str
    up_to_date: bool


class SnapshotOut(Schema):
    offset: str
    state: dict[str, Any]


class RunIn(Schema):
    run_id: str | None = Field(None, min_length=1, max_length=128)
    agent: str = Field("", max_length=128)
    parent: str | None = Field(None, max_length=128, description="Parent run id, for sub-agents.")


class FinishIn(Schema):
    outcome: str = Field("success", pattern="^(success|cancelled)$")


class FailIn(Schema):
    message: str = Field(min_length=1, max_length=2000)
    code: str | None = Field(None, max_length=100)


class RunOut(Schema):
    run_id: str
    status: str
    agent: str
    parent: str | None
    reason: str
    started_at: datetime
    ended_at: datetime | None
    usage: dict[str, Any] | None = Field(None, description="What the run reported it cost.")


class RunList(Schema):
    items: list[RunOut]
    count: int
    next_offset: int | None = Field(
        None, description="Where the next page starts (pass it as offset); null on the last."
    )


class CancelIn(Schema):
    run: str | None = Field(None, max_length=128, description="Omit to cancel every active run.")
    reason: str | None = Field(None, max_length=200)


class SteerIn(Schema):
    run: str = Field(max_length=128)
    text: str = Field(min_length=1, max_length=32000)


class InterruptIn(Schema):
    run: str | None = Field(None, max_length=128)
    text: str = Field(min_length=1, max_length=32000)


class FeedbackIn(Schema):
    message: str = Field(min_length=1, max_length=128, description="The assistant message rated.")
    rating: str = Field(pattern="^(up|down)$")
    comment: str | None = Field(None, max_length=2000)
    correction: str | None = Field(None, max_length=32000, description="A better answer.")


class MessageIn(Schema):
    text: str = Field(min_length=1, max_length=32000)


class Device(Schema):
    id: str
    user: str
    label: str = ""


class PresenceOut(Schema):
    devices: list[Device]


class KeyIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    sessions: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="The only sessions the key reaches (names). Give these or all_sessions.",
    )
    all_sessions: bool = Field(
        False, description="true: the key reaches every session of yours, now and later."
    )


class KeyOut(Schema):
    id: int
    name: str
    prefix: str
    all_sessions: bool
    sessions: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class KeyList(Schema):
    items: list[KeyOut]
    count: int
    next_offset: int | None = Field(
        None, description="Where the next page starts (pass it as offset); null on the last."
    )


class KeyCreated(KeyOut):
    key: str = Field(description="The full key. Shown once; store it now.")
