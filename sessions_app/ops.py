"""Endpoints for operators: liveness, readiness (database and channel layer), Prometheus metrics.

Mount them where your infrastructure expects them::

    path("", include("sessions_app.ops")),   # /health, /ready, /metrics
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from typing import Any

from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from sessions_app import dbexec, metrics
from sessions_app.conf import setting

READY_TIMEOUT = 2.0


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _check_database() -> None:
    await dbexec.run_read(_database)


async def _check_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "ready.probe"})
    await layer.receive(channel)


async def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and the channel layer both answer within 2 s."""
    checks: dict[str, Any] = {}
    for name, probe in (("database", _check_database), ("channel_layer", _check_layer)):
        started = time.monotonic()
        try:
            await asyncio.wait_for(probe(), READY_TIMEOUT)
            checks[name] = {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}
        except Exception as exc:  # any failure means "not ready", with the reason
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ready" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


def _from_allowed_address(request: HttpRequest) -> bool:
    allowed = setting("METRICS_ALLOWED_IPS")
    if not allowed:
        return False
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(client in net for net in allowed_networks(allowed))


def allowed_networks(allowed: object) -> list[Any]:
    """The networks of METRICS_ALLOWED_IPS; an entry that is none is skipped (and reported by
    the system check sessions_app.E007)."""
    networks = []
    for entry in allowed if isinstance(allowed, list | tuple) else []:
        try:
            networks.append(ipaddress.ip_network(str(entry), strict=False))
        except ValueError:
            continue
    return networks


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """Why /metrics is refused to this request, if it is: it is closed unless a token or an
    address allow-list opens it (it tells the count of sessions, runs and sockets)."""
    if _from_allowed_address(request):
        return None
    token = setting("METRICS_TOKEN")
    if not token:
        return JsonResponse(
            {"code": "forbidden", "message": "metrics are closed to this address"}, status=403
        )
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    # As bytes: compare_digest refuses non-ASCII text, and a header may carry any.
    if hmac.compare_digest(given.encode(), str(token).encode()):
        return None
    return JsonResponse(
        {"code": "unauthenticated", "message": "send Authorization: Bearer <METRICS_TOKEN>"},
        status=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def prometheus(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: ``METRICS_ENABLED`` turns them off; ``METRICS_TOKEN`` or
    ``METRICS_ALLOWED_IPS`` opens them (neither set: closed)."""
    if not setting("METRICS_ENABLED") or metrics.REGISTRY is None:
        return HttpResponse(status=404)
    refused = _refusal(request)
    if refused is not None:
        return refused
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    metrics.register_collectors()
    return HttpResponse(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST)


urlpatterns = [
    path("health", health, name="sessions_app-health"),
    path("ready", ready, name="sessions_app-ready"),
    path("metrics", prometheus, name="sessions_app-metrics"),
]
