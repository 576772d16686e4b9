"""One NinjaAPI for the demo site, mounting each app's router."""

from __future__ import annotations

from typing import Any

from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.openapi.schema import OpenAPISchema

from mlexec_app.api import router as mlexec_router
from sessions_app.api import router as sessions_router


class SiteAPI(NinjaAPI):
    """A NinjaAPI whose OpenAPI schema is built once per path prefix.

    django-ninja builds the schema again on every request to ``openapi.json`` (and answers
    every method there): about half a second of CPU for this site's schema, which anyone may
    ask for (the docs are public), over and over. The routes do not change while the process
    runs, so the first build is kept. With ``docs_decorator=require_safe`` the schema and the
    docs page answer GET and HEAD only (405 otherwise).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schemas: dict[str, OpenAPISchema] = {}

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        schema = self._schemas.get(path_prefix)
        if schema is None:
            schema = super().get_openapi_schema(path_prefix=path_prefix)
            self._schemas[path_prefix] = schema
        return schema


api = SiteAPI(
    title="Django AI stack",
    version="0.1.0",
    description="Durable AI sessions (sessions_app) and ML project execution (mlexec_app).",
    urls_namespace="api",
    docs_decorator=require_safe,
)
api.add_router("/sessions/", sessions_router)
api.add_router("/mlexec/", mlexec_router)
