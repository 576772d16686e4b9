from django.contrib import admin
from django.urls import include, path
from ninja import NinjaAPI

from mlexec_app.api import router

api = NinjaAPI(urls_namespace="api")
api.add_router("/mlexec/", router)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("mlexec/", include("mlexec_app.urls")),
]
