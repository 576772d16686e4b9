"""SSE at /events/<channel>/ (django-eventstream's URL with channels); publishing at /publish/."""

from __future__ import annotations

import django_eventstream
from django.urls import include, path

from bench.eventstream_site import views

urlpatterns = [
    path("events/<channel>/", include(django_eventstream.urls), {"format-channels": ["{channel}"]}),
    path("publish/<channel>/", views.publish),
    path("", views.ready),
]
