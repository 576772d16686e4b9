"""One NinjaAPI for the demo site, mounting each app's router."""

from __future__ import annotations

from ninja import NinjaAPI

from mlexec_app.api import router as mlexec_router
from sessions_app.api import router as sessions_router

api = NinjaAPI(
    title="Django AI stack",
    version="0.1.0",
    description="Durable AI sessions (sessions_app) and ML project execution (mlexec_app).",
    urls_namespace="api",
)
api.add_router("/sessions/", sessions_router)
api.add_router("/mlexec/", mlexec_router)
