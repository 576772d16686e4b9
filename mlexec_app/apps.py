from django.apps import AppConfig


class MlexecAppConfig(AppConfig):
    name = "mlexec_app"
    verbose_name = "ML project execution"
    default_auto_field = "django.db.models.BigAutoField"
