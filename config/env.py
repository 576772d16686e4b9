"""Read the demo site's settings from the environment.

Kept apart from ``settings.py`` so the test settings for the single-app installs can reuse it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TRUE_WORDS = {"1", "true", "yes", "on"}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in TRUE_WORDS


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if not raw:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_env(default_sqlite: Path) -> dict[str, Any]:
    """``DATABASE_URL`` parsed by dj-database-url; a SQLite file when unset."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{default_sqlite}"
    try:
        import dj_database_url
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "Reading DATABASE_URL needs dj-database-url: pip install 'django-ai-stack[postgres]'"
        ) from exc
    config = dict(dj_database_url.parse(url, conn_max_age=0))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Writers wait for the lock instead of failing at once, and take it when the
        # transaction starts (no deadlocking upgrades); WAL lets readers go on while one
        # writer commits.
        config["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        name = str(config.get("NAME") or "")
        if name and name != ":memory:":
            # Tests get a file too: Django's default in-memory test database uses SQLite's
            # shared cache, whose table locks fail at once ("database table is locked")
            # instead of waiting, and the log reads and writes from several threads.
            config["TEST"] = {"NAME": str(Path(name).with_name("test-" + Path(name).name))}
    return config


def channel_layers_from_env() -> dict[str, Any]:
    """``REDIS_URL`` selects channels_redis; otherwise the in-memory layer (one process)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [url],
                "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "asgi"),
            },
        }
    }
