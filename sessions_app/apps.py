from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Durable sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sessions_app import (
            checks,  # noqa: F401  (registers system checks)
            conf,
            revocation,
        )

        conf.connect_signals()
        revocation.connect_signals()
