"""Settings of the demo site, which installs both apps.

Everything that differs between machines comes from the environment; see docs/configuration.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import channel_layers_from_env, database_from_env, env_bool, env_list

BASE_DIR = Path(__file__).resolve().parent.parent

# Off unless asked for: `make run` sets DEBUG=1. A site started without settings must not
# show tracebacks, nor sign with a key everyone can read.
DEBUG = env_bool("DEBUG", False)
# Public (it is in this file): only for DEBUG on a developer's machine. sessions_app's system
# check sessions_app.W030 warns whenever a site runs with it.
DEMO_SECRET_KEY = "django-insecure-demo-key-only-for-local-use"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable to a long random "
            "string (python -c 'import secrets; print(secrets.token_urlsafe(50))'), or set "
            "DEBUG=1 for local development only (make run does); see docs/operations.md."
        )
    SECRET_KEY = DEMO_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Served over HTTPS (production: docs/operations.md): redirect plain HTTP, secure cookies, HSTS.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS") or (31536000 if HTTPS else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", HTTPS)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that terminates TLS and always sets (overwrites) this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Not "daphne": its app only makes `runserver` serve ASGI, and it imports Twisted into every
# process (0.65 s of CPU a `manage.py` command here). The demo is served by `python -m daphne`
# (`make run`); `runserver` would serve its pages without WebSockets.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "sessions_app",
    "mlexec_app",
    "django_tasks",
    "django_tasks_db",
    "config",
]

# mlexec jobs: a database-backed queue served by `manage.py db_worker` (make run starts one);
# TASKS_BACKEND=django_tasks.backends.immediate.ImmediateBackend runs them inline (tests do).
TASKS = {"default": {"BACKEND": os.environ.get("TASKS_BACKEND", "django_tasks_db.DatabaseBackend")}}
# The bridge between the apps: job progress goes into a durable session; a stop there cancels.
MLEXEC_APP = {
    "PROGRESS_PUBLISHER": "config.bridge.publish_job_progress",
    # The cost curve of a project naming an agent reads that agent's runs (docs/mlexec/cost.md).
    "TRAFFIC_SOURCE": "config.traffic.measured",
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_env(BASE_DIR / "db.sqlite3")}
CHANNEL_LAYERS = channel_layers_from_env()

# Durable Streams door (/v1/stream/): an anonymous-stream prefix ("" opens every unowned
# name, as the conformance run needs) and the long-poll timeout, from the environment.
# The job bridge's sessions are named mlexec-job-<id>: no user may create such a name first.
SESSIONS_APP: dict[str, object] = {"RESERVED_NAME_PREFIXES": ("mlexec-job-",)}
if os.environ.get("SESSIONS_ANONYMOUS_STREAM_PREFIX") is not None:
    SESSIONS_APP["ANONYMOUS_STREAM_PREFIX"] = os.environ["SESSIONS_ANONYMOUS_STREAM_PREFIX"]
if os.environ.get("SESSIONS_LONG_POLL_TIMEOUT"):
    SESSIONS_APP["LONG_POLL_TIMEOUT"] = float(os.environ["SESSIONS_LONG_POLL_TIMEOUT"])
# Any other sessions_app setting, as JSON: SESSIONS_APP_JSON='{"MAX_BUFFERED_BYTES": 65536}'.
SESSIONS_APP.update(json.loads(os.environ.get("SESSIONS_APP_JSON") or "{}"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # LOG_FORMAT=json: one JSON object per line, with session, run and producer ids.
    "formatters": {"json": {"()": "sessions_app.logs.JsonFormatter"}},
    # Signed tokens ride in query strings (?token=): no log line keeps one.
    "filters": {"redact_tokens": {"()": "sessions_app.logs.RedactTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact_tokens"],
            **({"formatter": "json"} if os.environ.get("LOG_FORMAT") == "json" else {}),
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # uvicorn's request lines, through the redacting handler instead of uvicorn's own.
        "uvicorn.access": {"handlers": ["console"], "propagate": False},
        "django.channels.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # the demo agent's polling is not news
    },
}
