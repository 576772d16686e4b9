"""REST API of sessions_app (django-ninja router, mounted by the site)."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["sessions"])
