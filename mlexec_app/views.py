"""Pages under /mlexec/: the signed-in user's projects, and one project's report."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from mlexec_app import reports
from mlexec_app.models import Project


@login_required
def index(request: HttpRequest) -> HttpResponse:
    projects = (
        Project.objects.filter(owner_id=request.user.pk)
        .annotate(run_count=Count("runs"))
        .order_by("-updated_at", "-id")
    )
    return render(request, "mlexec_app/index.html", {"projects": projects})


@login_required
def project(request: HttpRequest, slug: str) -> HttpResponse:
    # Someone else's project is a 404, like a missing one.
    found = get_object_or_404(Project, slug=slug, owner_id=request.user.pk)
    return render(request, "mlexec_app/project.html", reports.page_context(found))
