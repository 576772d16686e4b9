"""Create the demo login (idempotent) and print it."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the demo superuser (DEMO_USER / DEMO_PASSWORD, default demo / demo) and print it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_USER", "demo")
        password = os.environ.get("DEMO_PASSWORD", "demo")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        self.stdout.write(
            self.style.SUCCESS(f"Demo login: user {username!r}, password {password!r}")
        )
