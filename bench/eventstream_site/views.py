"""Publishing into django-eventstream: a frame of events becomes one ``send_event`` per event."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_eventstream import send_event


@csrf_exempt
def publish(request: HttpRequest, channel: str) -> HttpResponse:
    events = json.loads(request.body)["events"]
    for event in events:
        # json_encode=True (the default): data is stored and sent as the event's JSON.
        send_event(channel, "message", event)
    return JsonResponse({"count": len(events)})


def ready(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")
