"""Settings of the plain Channels fan-out baseline (bench/plain_channels.py): no database."""

from __future__ import annotations

import os

from config.env import channel_layers_from_env

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, object] = {}
CHANNEL_LAYERS = channel_layers_from_env()
USE_TZ = True
