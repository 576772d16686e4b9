"""Mount with ``path("sessions/", include("sessions_app.doors.urls"))``.

AG-UI: ``agui/`` (HttpAgent's url), ``agui/<thread>/connect``, ``agui/<thread>/cancel``.
AI SDK: ``aisdk/chat`` (DefaultChatTransport's api), ``aisdk/chat/<id>/stream``,
``aisdk/chat/<id>/stop``.
"""

from django.urls import path

from sessions_app.doors import agui, aisdk

app_name = "sessions_app_doors"

urlpatterns = [
    path("agui/", agui.run, name="agui-run"),
    path("agui/<str:thread>/connect", agui.connect, name="agui-connect"),
    path("agui/<str:thread>/cancel", agui.cancel, name="agui-cancel"),
    path("aisdk/chat", aisdk.chat, name="aisdk-chat"),
    path("aisdk/chat/<str:chat_id>/stream", aisdk.resume, name="aisdk-resume"),
    path("aisdk/chat/<str:chat_id>/stop", aisdk.stop, name="aisdk-stop"),
]
