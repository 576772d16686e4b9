from django.urls import path

from mlexec_app import views

app_name = "mlexec_app"

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<slug:slug>/", views.project, name="project"),
]
