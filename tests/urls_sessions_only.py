from django.contrib import admin
from django.urls import include, path
from ninja import NinjaAPI

from sessions_app.api import router

api = NinjaAPI(urls_namespace="api")
api.add_router("/sessions/", router)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("sessions/", include("sessions_app.urls")),
    path("sessions/", include("sessions_app.doors.urls")),
    path("v1/stream/", include("sessions_app.streams.urls")),
    path("", include("sessions_app.ops")),
]
