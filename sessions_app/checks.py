"""System checks for sessions_app settings (ids listed in docs/sessions/configuration.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from sessions_app.conf import DEFAULTS, get_config
from sessions_app.ops import allowed_networks

POSITIVE_INTS = (
    "MAX_FRAME_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_EVENTS_PER_PUBLISH",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "MAX_FRAMES_PER_SECOND",
    "FRAME_BURST",
    "REPLAY_BATCH",
    "GROUP_COMMIT_MAX_ENTRIES",
    "PRESENCE_TTL",
    "TOKEN_MAX_AGE",
    "MAX_BUFFERED_BYTES",
    "MAX_EVENTS_FRAME_BYTES",
    "ANONYMOUS_MAX_STREAMS",
    "ANONYMOUS_MAX_STREAM_BYTES",
    "ANONYMOUS_MAX_TTL",
)


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    errors: list[Any] = []
    raw = getattr(settings, "SESSIONS_APP", {})
    if not isinstance(raw, dict):
        return [
            Error(
                "SESSIONS_APP must be a dict.",
                hint="Set SESSIONS_APP = {'RETENTION_DAYS': 30, ...} in your settings.",
                id="sessions_app.E001",
            )
        ]
    for key in raw:
        if key not in DEFAULTS:
            errors.append(
                Warning(
                    f"Unknown key SESSIONS_APP[{key!r}] is ignored.",
                    hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                    id="sessions_app.W001",
                )
            )
    config = get_config()
    for key in POSITIVE_INTS:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            errors.append(
                Error(
                    f"SESSIONS_APP[{key!r}] must be a positive integer, not {value!r}.",
                    hint=f"The default is {DEFAULTS[key]!r}.",
                    id="sessions_app.E002",
                )
            )
    retention = config["RETENTION_DAYS"]
    if retention is not None and (
        not isinstance(retention, int | float) or isinstance(retention, bool) or retention <= 0
    ):
        errors.append(
            Error(
                "SESSIONS_APP['RETENTION_DAYS'] must be None or a positive number, "
                f"not {retention!r}.",
                hint="None keeps entries forever.",
                id="sessions_app.E003",
            )
        )
    most = config["MAX_SESSIONS_PER_USER"]
    if most is not None and (not isinstance(most, int) or isinstance(most, bool) or most <= 0):
        errors.append(
            Error(
                f"SESSIONS_APP['MAX_SESSIONS_PER_USER'] must be None or a positive integer, "
                f"not {most!r}.",
                hint="None: no limit; the default is 10000.",
                id="sessions_app.E006",
            )
        )
    allowed_ips = config["METRICS_ALLOWED_IPS"]
    if allowed_ips is not None and (
        not isinstance(allowed_ips, list | tuple)
        or len(allowed_networks(allowed_ips)) != len(allowed_ips)
    ):
        errors.append(
            Error(
                "SESSIONS_APP['METRICS_ALLOWED_IPS'] must be None or a list of IP addresses or "
                f"networks, not {allowed_ips!r}.",
                hint="For example ['127.0.0.1', '10.0.0.0/8'].",
                id="sessions_app.E007",
            )
        )
    window = config["GROUP_COMMIT_WINDOW"]
    if not isinstance(window, int | float) or isinstance(window, bool) or not 0 <= window <= 1:
        errors.append(
            Error(
                "SESSIONS_APP['GROUP_COMMIT_WINDOW'] must be seconds between 0 and 1, "
                f"not {window!r}.",
                hint="The default, 0.002, batches appends that arrive together.",
                id="sessions_app.E004",
            )
        )
    errors.extend(_check_streams(config))
    errors.extend(_check_doors(config) + _check_turns(config))
    if not getattr(settings, "CHANNEL_LAYERS", None):
        errors.append(
            Error(
                "sessions_app needs a channel layer for live delivery.",
                hint="Set CHANNEL_LAYERS, e.g. the in-memory layer for one process or "
                "channels_redis.core.RedisChannelLayer for several.",
                id="sessions_app.E005",
            )
        )
    return errors


# Keys everyone can read: Django's own marker for generated, not-for-production keys (which the
# demo site's DEBUG-only key also carries).
PUBLIC_KEY_PREFIX = "django-insecure-"


@register(Tags.security)
def check_site_security(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """A site that signs tokens with a public key, or shows tracebacks, is open to anyone."""
    warnings: list[Any] = []
    if str(getattr(settings, "SECRET_KEY", "")).startswith(PUBLIC_KEY_PREFIX):
        warnings.append(
            Warning(
                "SECRET_KEY is a known, public key: anyone can forge the signed tokens "
                "sessions_app accepts, for any user.",
                hint="Fine on a developer's machine (make run); anywhere else set SECRET_KEY "
                "to a long random string (docs/operations.md).",
                id="sessions_app.W030",
            )
        )
    if settings.DEBUG:
        warnings.append(
            Warning(
                "DEBUG is on: error pages show tracebacks and settings to anyone.",
                hint="Fine on a developer's machine (make run); anywhere else leave DEBUG off.",
                id="sessions_app.W031",
            )
        )
    return warnings


# --- Durable Streams door ------------------------------------------------------------------


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _check_streams(config: dict[str, Any]) -> list[Any]:
    errors: list[Any] = []
    prefix = config["ANONYMOUS_STREAM_PREFIX"]
    if prefix is not None and not isinstance(prefix, str):
        errors.append(
            Error(
                "SESSIONS_APP['ANONYMOUS_STREAM_PREFIX'] must be None or a string, "
                f"not {prefix!r}.",
                hint="None: no anonymous streams; 'public/': anonymous streams under that prefix.",
                id="sessions_app.E010",
            )
        )
    for key in ("LONG_POLL_TIMEOUT", "SSE_MAX_SECONDS", "SLOW_CONSUMER_TIMEOUT"):
        if not _seconds(config[key]):
            errors.append(
                Error(
                    f"SESSIONS_APP[{key!r}] must be a positive number of seconds, "
                    f"not {config[key]!r}.",
                    hint=f"The default is {DEFAULTS[key]!r}.",
                    id="sessions_app.E011",
                )
            )
    if not isinstance(config["STREAMS_LOOP_CONNECTION"], bool):
        errors.append(
            Error(
                "SESSIONS_APP['STREAMS_LOOP_CONNECTION'] must be True or False, "
                f"not {config['STREAMS_LOOP_CONNECTION']!r}.",
                hint="True (the default) lets a lone append on PostgreSQL run on the event loop.",
                id="sessions_app.E012",
            )
        )
    coalesce = config["PRESENCE_COALESCE"]
    if (
        not isinstance(coalesce, int | float)
        or isinstance(coalesce, bool)
        or not 0 <= coalesce <= 60
    ):
        errors.append(
            Error(
                "SESSIONS_APP['PRESENCE_COALESCE'] must be a number of seconds from 0 to 60, "
                f"not {coalesce!r}.",
                hint="0 sends a presence frame per change; the default is 0.25.",
                id="sessions_app.E013",
            )
        )
    return errors


# --- AG-UI and AI SDK doors ----------------------------------------------------------------


def _check_doors(config: dict[str, Any]) -> list[Any]:
    return [
        Error(
            f"SESSIONS_APP[{key!r}] must be a positive number of seconds, not {config[key]!r}.",
            hint=f"The default is {DEFAULTS[key]!r}.",
            id="sessions_app.E020",
        )
        for key in ("DOORS_RUN_START_TIMEOUT", "DOORS_KEEPALIVE_SECONDS")
        if not _seconds(config[key])
    ]


# --- turns and agent workers ---------------------------------------------------------------


def _check_turns(config: dict[str, Any]) -> list[Any]:
    from sessions_app.domain.errors import BadRequest
    from sessions_app.domain.turns import Policy

    errors: list[Any] = []
    try:
        Policy.parse(config["TURNS"], Policy())
    except BadRequest as exc:
        errors.append(
            Error(
                f"SESSIONS_APP['TURNS'] is not a turn policy: {exc.message}.",
                hint='e.g. {"agent": "assistant", "agents": [], "on_busy": "queue"}; '
                '"agent": None asks no answer of user messages.',
                id="sessions_app.E030",
            )
        )
    for key in ("TURN_LEASE_SECONDS", "TURN_CLAIM_WAIT_MAX"):
        if not _seconds(config[key]):
            errors.append(_not_positive(key, "sessions_app.E031"))
    for key in ("TURN_MAX_ATTEMPTS", "TURN_CONTEXT_CHARS", "WORKER_FRAMES_PER_SECOND"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(_not_positive(key, "sessions_app.E031"))
    gateways = config["AGENT_GATEWAYS"]
    if gateways:
        from sessions_app.agents import gateway

        try:
            gateway.handlers(gateways)
        except (ValueError, TypeError) as exc:
            errors.append(
                Error(
                    str(exc),
                    hint='{"assistant": {"protocol": "agui", "url": "http://agents:9000/"}}; '
                    "see docs/sessions/agents.md.",
                    id="sessions_app.E032",
                )
            )
    return errors


def _not_positive(key: str, check_id: str) -> Any:
    return Error(
        f"SESSIONS_APP[{key!r}] must be a positive number.",
        hint=f"The default is {DEFAULTS[key]!r}.",
        id=check_id,
    )
