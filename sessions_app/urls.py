from django.urls import path

from sessions_app import views

app_name = "sessions_app"

urlpatterns = [
    path("", views.index, name="index"),
]
