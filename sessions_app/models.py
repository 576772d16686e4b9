"""Storage of the session log: sessions (streams), their entries, producers, runs."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q

from sessions_app.domain.offsets import format_offset
from sessions_app.domain.runs import RunStatus
from sessions_app.domain.turns import TurnState

JSON_CONTENT_TYPE = "application/json"


def is_json_type(content_type: str) -> bool:
    """Whether a session of this content type holds events (JSON), not a caller's bytes."""
    return content_type.split(";")[0].strip().lower() == JSON_CONTENT_TYPE


def new_session_name() -> str:
    return "s-" + secrets.token_hex(12)


# Where the log keeps the Durable Streams protocol state of a session (the last Stream-Seq,
# the Stream-Expires-At text, the fork request): ``sessions_app.log.STATE_KEY``. The server's
# alone: no door shows it or takes it from a caller.
PROTOCOL_STATE_KEY = "durable_streams"


def with_protocol_state(metadata: Any, stored: Any) -> dict[str, Any]:
    """``metadata`` with the protocol state of ``stored`` (the row's metadata now) in place
    of whatever it holds under that key."""
    out = {k: v for k, v in dict(metadata or {}).items() if k != PROTOCOL_STATE_KEY}
    kept = (stored or {}).get(PROTOCOL_STATE_KEY) if isinstance(stored, dict) else None
    return {**out, PROTOCOL_STATE_KEY: kept} if kept is not None else out


class Session(models.Model):
    """A durable stream with an owner and members: one conversation or one agent task.

    ``head`` is the offset of the last entry ever appended (0: none yet). It is advanced in the
    same transaction that stores the entries, under the row's lock, so offsets are allocated
    in commit order and never reused. ``tail`` is the last offset removed by retention:
    entries ``tail + 1 .. head`` are readable; ``snapshot`` folds everything up to ``tail``.
    """

    name = models.CharField(
        max_length=255,
        unique=True,
        default=new_session_name,
        help_text="Stream name; the id clients use.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="durable_sessions",
        help_text="Empty for anonymous (public) streams.",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="Membership",
        related_name="shared_durable_sessions",
        blank=True,
    )
    title = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    content_type = models.CharField(max_length=200, default=JSON_CONTENT_TYPE)
    head = models.BigIntegerField(default=0, editable=False)
    tail = models.BigIntegerField(default=0, editable=False)
    snapshot = models.JSONField(null=True, blank=True, editable=False)
    # A cache: the fold of entries 1..checkpoint_seq, written by readers so that a snapshot
    # need not fold the whole log again; ignored when retention has moved the tail past it.
    checkpoint = models.JSONField(null=True, blank=True, editable=False)
    checkpoint_seq = models.BigIntegerField(default=0, editable=False)
    size_bytes = models.BigIntegerField(default=0, editable=False)
    closed = models.BooleanField(default=False)
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Keep entries this many days; empty: the site default."
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Delete the session after this time."
    )
    ttl_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Sliding expiry: each access pushes expires_at this far ahead.",
    )
    deleted = models.BooleanField(
        default=False, help_text="Soft-deleted: hidden, kept while forks need it."
    )
    forked_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="forks"
    )
    fork_seq = models.BigIntegerField(
        default=0, editable=False, help_text="Entries 1..fork_seq are read from the parent."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "session"
        indexes = [
            models.Index(fields=["owner", "-last_activity"]),
            # The export's order (sessions_app/export.py): no sort of the whole table at its
            # cursor's open, and a --since/--until export reads only its range.
            models.Index(fields=["created_at", "id"], name="sessions_created_id_idx"),
        ]

    def __str__(self) -> str:
        return self.title or self.name

    # Written only by the log service, under the row's lock: a save() of a stale instance
    # (the admin, a view) must never move them back.
    LOG_FIELDS = frozenset(
        {"head", "tail", "snapshot", "checkpoint", "checkpoint_seq", "size_bytes", "last_activity"}
    )

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            super().save(*args, **kwargs)
            return
        if kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.LOG_FIELDS
            ]
        if "metadata" not in kwargs["update_fields"]:
            super().save(*args, **kwargs)
            return
        # The log keeps protocol state in metadata[PROTOCOL_STATE_KEY] (the last Stream-Seq):
        # a save of metadata keeps what is stored there now, under the row's lock. A REST
        # PATCH of metadata dropped it (a lower Stream-Seq was taken again), and a stale
        # instance (the admin) wrote an older one back.
        with transaction.atomic(using=kwargs.get("using")):
            stored = (
                Session.objects.select_for_update()
                .filter(pk=self.pk)
                .values_list("metadata", flat=True)
                .first()
            )
            self.metadata = with_protocol_state(self.metadata, stored)
            super().save(*args, **kwargs)

    @property
    def is_json(self) -> bool:
        return is_json_type(self.content_type)

    @property
    def head_offset(self) -> str:
        return format_offset(self.head)

    @property
    def entry_count(self) -> int:
        return self.head - self.tail


class Membership(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "user"], name="sessions_app_unique_member")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.session}"


class Entry(models.Model):
    """One event (or byte chunk) of a session, at its offset."""

    # No index of its own: the unique (session, seq) index serves the foreign key (a second
    # one was written on every entry for nothing; issue #20).
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="entries", db_index=False
    )
    seq = models.BigIntegerField(help_text="The offset, as a number.")
    type = models.CharField(max_length=64, blank=True)
    run = models.CharField(max_length=128, blank=True)
    body = models.BinaryField()
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "entries"
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="sessions_app_unique_offset")
        ]
        indexes = [models.Index(fields=["session", "run", "seq"])]

    def __str__(self) -> str:
        return f"{self.session_id}@{self.seq}"

    @property
    def offset(self) -> str:
        return format_offset(self.seq)


class Producer(models.Model):
    """The idempotent-producer state of one producer id on one session."""

    # Served by the unique (session, producer_id) index.
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="producers", db_index=False
    )
    producer_id = models.CharField(max_length=128)
    epoch = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    last_first = models.BigIntegerField(help_text="First offset of the last accepted append.")
    last_count = models.IntegerField(help_text="Entries in the last accepted append.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "producer_id"], name="sessions_app_unique_producer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.producer_id} e{self.epoch} s{self.last_seq}"


class Run(models.Model):
    """One agent turn inside a session, with an optional parent run for sub-agents."""

    # Served by the unique (session, run_id) index.
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    run_id = models.CharField(max_length=128)
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    agent = models.CharField(max_length=128, blank=True)
    status = models.CharField(
        max_length=16,
        choices=[(s.value, s.value) for s in RunStatus],
        default=RunStatus.RUNNING.value,
    )
    reason = models.CharField(max_length=200, blank=True)
    started_seq = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancel_deadline = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Cancelled by timeout if the agent has not acknowledged by then.",
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the agent."
    )
    turn = models.ForeignKey(
        "Turn",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
        help_text="The turn this run answers (one run per attempt).",
    )
    usage = models.JSONField(
        null=True,
        blank=True,
        help_text="What the run reported it cost (sessions.USAGE events, summed): model, "
        "tokens, cost, latency.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "run_id"], name="sessions_app_unique_run")
        ]
        indexes = [
            models.Index(
                fields=["status"], condition=Q(status="running"), name="sessions_app_running_runs"
            )
        ]

    def __str__(self) -> str:
        return f"{self.run_id} ({self.status})"

    @property
    def duration(self) -> Any:
        return (self.ended_at - self.started_at) if self.ended_at else None


class Turn(models.Model):
    """A user message that asks for an answer: a durable work item for agent workers.

    Created in the transaction that stores the message. Workers claim turns (one at a time
    per session, oldest first) under a lease their heartbeat renews; see ``domain.turns``.
    """

    # Served by the unique (session, message) index.
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="turns", db_index=False
    )
    message = models.CharField(max_length=128, help_text="The id of the user message.")
    message_seq = models.BigIntegerField(help_text="The offset of the message's first event.")
    agent = models.CharField(max_length=128)
    state = models.CharField(
        max_length=16,
        choices=[(s.value, s.value) for s in TurnState],
        default=TurnState.QUEUED.value,
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Claims so far.")
    run_id = models.CharField(max_length=128, blank=True, help_text="The current attempt's run.")
    worker = models.CharField(max_length=200, blank=True, help_text="Who holds the claim.")
    key = models.ForeignKey(
        "ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The worker key holding the claim.",
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    input = models.JSONField(
        default=dict, blank=True, help_text="What the client sent beyond the text (AG-UI)."
    )
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "message"], name="sessions_app_unique_turn")
        ]
        indexes = [
            # The claims' scan, oldest first: only open turns, whatever the agents asked for
            # (on (agent, id), PostgreSQL planned it over the primary key, through every done
            # turn, while its statistics still saw them open: issue #20).
            models.Index(
                fields=["id"],
                condition=Q(state__in=["queued", "claimed"]),
                name="sessions_app_open_turns_by_id",
            ),
            models.Index(fields=["session", "state"], name="sessions_app_turns_by_session"),
        ]

    def __str__(self) -> str:
        return f"turn {self.pk} ({self.state})"


class ApiKey(models.Model):
    """A key an agent authenticates with: stored hashed, scoped, revocable.

    The secret is shown once, when the key is made; it reads ``dsk_<prefix>_<secret>``, and the
    prefix finds the row without revealing anything.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="session_api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed = models.CharField(max_length=128, editable=False)
    all_sessions = models.BooleanField(
        default=False,
        help_text="Reaches every session of the user. Off: only the sessions listed below "
        "(none listed, or all of them deleted: no session at all).",
    )
    sessions = models.ManyToManyField(
        Session,
        blank=True,
        related_name="api_keys",
        help_text="The sessions a key without all_sessions reaches.",
    )
    agents = models.CharField(
        max_length=500,
        blank=True,
        help_text="A worker key: the agent names (comma-separated, * for any) whose turns it "
        "may claim on every session; while it holds a turn it reads and writes that session. "
        "Empty: not a worker key. Only made in the admin or with make_worker_key.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def serves(self) -> frozenset[str]:
        """The agent names a worker key claims turns for (empty: not a worker key)."""
        return frozenset(name.strip() for name in self.agents.split(",") if name.strip())


class Audit(models.Model):
    """One run of the delivery audit (``manage.py sessions audit URL --save``): the report as
    JSON (docs/sessions/audit.md) and its gap map in a line, to browse and compare in the admin."""

    url = models.URLField(max_length=2000)
    protocol = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    report = models.JSONField(help_text="The report's JSON (format sessions-audit/1).")
    summary = models.CharField(
        max_length=200, help_text="The gap map: capability=verdict, in order; or the problem."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["url", "protocol", "created_at"])]

    def __str__(self) -> str:
        return f"{self.url} ({self.protocol}) {self.created_at:%Y-%m-%d %H:%M}"

    def previous(self) -> Audit | None:
        """The audit of the same URL and protocol just before this one."""
        return (
            Audit.objects.filter(
                url=self.url, protocol=self.protocol, created_at__lte=self.created_at
            )
            .exclude(pk=self.pk)
            .filter(models.Q(created_at__lt=self.created_at) | models.Q(pk__lt=self.pk))
            .order_by("-created_at", "-id")
            .first()
        )


class Feedback(models.Model):
    """A user's latest rating of an assistant message, for the admin to filter.

    A projection of the log's ``sessions.FEEDBACK`` events: written only by the commit that
    appends each one (``log.ratings.FeedbackTracker``), in the same transaction, so it says
    what the fold says: one row per (session, message, user), a later rating replacing the
    earlier one. The log stays the truth; ``manage.py sessions backfill-feedback`` rebuilds
    the rows of events appended before this table existed.
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="ratings")
    message = models.CharField(max_length=128, help_text="The id of the rated message.")
    user = models.CharField(max_length=150, help_text="The username of the credential that rated.")
    rating = models.CharField(max_length=4, choices=[("up", "up"), ("down", "down")])
    comment = models.TextField(blank=True)
    correction = models.TextField(blank=True, help_text="The answer the user would have wanted.")
    run_id = models.CharField(max_length=128, blank=True, help_text="The run that answered.")
    agent = models.CharField(max_length=128, blank=True, help_text="The agent that answered.")
    seq = models.BigIntegerField(help_text="The offset of the rating's event.")
    rated_at = models.DateTimeField()

    class Meta:
        verbose_name = "feedback"
        verbose_name_plural = "feedback"
        constraints = [
            models.UniqueConstraint(
                fields=["session", "message", "user"], name="sessions_app_unique_rating"
            )
        ]
        indexes = [
            models.Index(fields=["-rated_at"], name="sessions_app_ratings_recent"),
            models.Index(fields=["agent", "rated_at"], name="sessions_app_ratings_agent"),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.rating} on {self.message}"


class UsageByDay(Run):
    """Runs seen as usage per agent and per day (an admin page; no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "usage by agent and day"
        verbose_name_plural = "usage by agent and day"


class Export(models.Model):
    """One run of ``manage.py sessions export-dataset``: its dataset card, for the admin.

    Only the card is kept (counts, date range, ratings, redactions, filters, the names of
    the files written); the exported conversations stay in the files the operator chose.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    conversations = models.PositiveIntegerField()
    took_seconds = models.FloatField(help_text="How long the export ran.")
    out = models.CharField(max_length=1000, blank=True, help_text="Where it wrote (empty: stdout).")
    card = models.JSONField(help_text="The dataset card.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"export of {self.conversations} conversations, {self.created_at:%Y-%m-%d %H:%M}"
