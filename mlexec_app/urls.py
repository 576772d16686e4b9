from django.urls import path

from mlexec_app import views

app_name = "mlexec_app"

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<slug:slug>/", views.project, name="project"),
    path("projects/<slug:slug>/search/", views.start_search, name="start_search"),
    path("projects/<slug:slug>/jobs/<int:job_id>/labels/", views.labels, name="labels"),
    path(
        "projects/<slug:slug>/jobs/<int:job_id>/labels/<int:index>/",
        views.label_decide,
        name="label_decide",
    ),
    path("projects/<slug:slug>/jobs/<int:job_id>/labels.csv", views.labels_csv, name="labels_csv"),
    path("projects/<slug:slug>/jobs/<int:job_id>/labels.npz", views.labels_npz, name="labels_npz"),
    path("projects/<slug:slug>/jobs/<int:job_id>/labels/fix/", views.labels_fix, name="labels_fix"),
    path("projects/<slug:slug>/jobs/<int:job_id>/errors/", views.errors, name="errors"),
    path(
        "projects/<slug:slug>/jobs/<int:job_id>/errors/<int:index>/",
        views.error_tag,
        name="error_tag",
    ),
    path(
        "projects/<slug:slug>/jobs/<int:job_id>/errors/categories/",
        views.error_category,
        name="error_category",
    ),
]
