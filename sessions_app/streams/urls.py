"""Mount with ``path("v1/stream/", include("sessions_app.streams.urls"))``.

The conformance suite and the protocol's clients expect exactly ``<base>/v1/stream/<name>``.
"""

from django.urls import path

from sessions_app.streams.views import stream_view

app_name = "sessions_app_streams"

urlpatterns = [
    path("<path:name>", stream_view, name="stream"),
]
