"""django-eventstream set up as its README says for persisted, multi-process SSE.

* ``EVENTSTREAM_STORAGE_CLASS = DjangoModelStorage``: every event is a row (resume with
  Last-Event-ID); ``EVENTSTREAM_REDIS``: events are published on Redis so every process's
  listeners hear them.
* CONN_MAX_AGE = 0 (Django's default): under ASGI each request runs its sync code on its
  own thread, so persistent connections would pile up, one per thread, past max_connections.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import dj_database_url

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_eventstream",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.eventstream_site.urls"
ASGI_APPLICATION = "bench.eventstream_site.asgi.application"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/test"),
        conn_max_age=int(os.environ.get("BENCH_ES_CONN_MAX_AGE", "0")),
    )
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
_redis = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
EVENTSTREAM_REDIS = {
    "host": _redis.hostname or "127.0.0.1",
    "port": _redis.port or 6379,
    "db": int((_redis.path or "/0").lstrip("/") or 0),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
