from importlib.util import find_spec

from django.apps import AppConfig


class MlexecAppConfig(AppConfig):
    name = "mlexec_app"
    verbose_name = "ML project execution"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mlexec_app import checks, conf, metrics  # noqa: F401  (registers checks and signals)

        metrics.register()
        if find_spec("django_tasks") is not None:  # the mlexec extra: jobs go to its queue
            from mlexec_app import tasks  # noqa: F401  (installs jobs' enqueuer)
