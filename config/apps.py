from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "config"
    label = "demo"
    verbose_name = "Demo site"
