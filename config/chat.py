"""The demo chat: a template for a chat front end on durable sessions.

Guide: docs/sessions/browser-client.md.

Plain Django views render the page; the browser client (sessions_app/static/sessions_app/
durable-sessions.js) does everything live over the WebSocket.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse_lazy
from django.views.decorators.http import require_POST

from sessions_app.access import (
    Actor,
    check_can_create,
    check_creatable_name,
    mint_token,
    visible_to,
)
from sessions_app.api import status_of
from sessions_app.domain.errors import SessionError
from sessions_app.models import Session, new_session_name

LOGIN_URL = reverse_lazy("chat:login")
RECENT_SESSIONS = 50


def _sessions(request: HttpRequest) -> list[Session]:
    return list(visible_to(request.user).order_by("-last_activity", "-pk")[:RECENT_SESSIONS])


@login_required(login_url=LOGIN_URL)
def index(request: HttpRequest) -> HttpResponse:
    """The list of sessions and a form to start one."""
    return render(request, "config/chat.html", {"sessions": _sessions(request), "current": None})


@login_required(login_url=LOGIN_URL)
def room(request: HttpRequest, name: str) -> HttpResponse:
    """One session: the live conversation."""
    current = get_object_or_404(visible_to(request.user), name=name)
    context = {
        "sessions": _sessions(request),
        "current": current,
        "auth_mode": "token" if request.GET.get("auth") == "token" else "cookie",
    }
    return render(request, "config/chat.html", context)


@require_POST
@login_required(login_url=LOGIN_URL)
def new_session(request: HttpRequest) -> HttpResponse:
    title = request.POST.get("title", "").strip()[:200] or "New chat"
    name = new_session_name()
    try:
        check_can_create(Actor(request.user))
        check_creatable_name(name)  # generated names are never reserved; every create path asks
    except SessionError as exc:
        return HttpResponse(exc.message, status=status_of(exc), content_type="text/plain")
    session = Session.objects.create(name=name, owner=request.user, title=title)
    return redirect("chat:room", name=session.name)


@require_POST
@login_required(login_url=LOGIN_URL)
def token(request: HttpRequest) -> JsonResponse:
    """A short-lived signed token for the WebSocket, limited to one session when asked."""
    name = request.GET.get("session")
    if name is not None:
        get_object_or_404(visible_to(request.user), name=name)
    return JsonResponse({"token": mint_token(request.user, [name] if name else None)})


class LoginView(auth_views.LoginView):
    template_name = "config/chat_login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return str(reverse_lazy("chat:index"))


app_name = "chat"
urlpatterns = [
    path("", index, name="index"),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page=LOGIN_URL), name="logout"),
    path("new/", new_session, name="new"),
    path("token/", token, name="token"),
    path("<str:name>/", room, name="room"),
]
