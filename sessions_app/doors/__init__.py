"""HTTP doors onto the session log for frontends: AG-UI over SSE and the Vercel AI SDK stream.

Mount with ``path("sessions/", include("sessions_app.doors.urls"))``; see docs/sessions/agui.md
and docs/sessions/aisdk.md. Each door parses its request, appends through the log service and
streams what the log holds, mapped by the pure modules ``domain.agui`` and ``domain.aisdk``.
"""
