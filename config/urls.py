from django.contrib import admin
from django.urls import include, path

from config import views
from config.api import api

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/", admin.site.urls),
    path("chat/", include("config.chat")),
    path("api/", api.urls),
    path("sessions/", include("sessions_app.urls")),
    path("sessions/", include("sessions_app.doors.urls")),
    path("v1/stream/", include("sessions_app.streams.urls")),
    path("mlexec/", include("mlexec_app.urls")),
    path("", include("sessions_app.ops")),  # /health, /ready, /metrics
]
