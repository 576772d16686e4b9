import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.core.checks import run_checks


def ids(settings_value, settings):
    settings.SESSIONS_APP = settings_value
    return {message.id for message in run_checks() if message.id.startswith("sessions_app.")}


def test_the_defaults_pass(settings):
    assert ids({}, settings) == set()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([("RETENTION_DAYS", 3)], "sessions_app.E001"),
        ({"RETENTION_DAY": 3}, "sessions_app.W001"),
        ({"MAX_FRAME_BYTES": 0}, "sessions_app.E002"),
        ({"MAX_FRAMES_PER_SECOND": "50"}, "sessions_app.E002"),
        ({"MAX_METADATA_BYTES": 0}, "sessions_app.E002"),
        ({"RETENTION_DAYS": -1}, "sessions_app.E003"),
        ({"GROUP_COMMIT_WINDOW": 5}, "sessions_app.E004"),
        ({"MAX_SESSIONS_PER_USER": 0}, "sessions_app.E006"),
        ({"PRESENCE_COALESCE": "0.25"}, "sessions_app.E013"),
        ({"PRESENCE_COALESCE": -1}, "sessions_app.E013"),
        ({"PRESENCE_COALESCE": float("nan")}, "sessions_app.E013"),
        ({"METRICS_ALLOWED_IPS": ["10.0.0.0/8", "intranet"]}, "sessions_app.E007"),
        ({"METRICS_ALLOWED_IPS": "127.0.0.1"}, "sessions_app.E007"),
        ({"TURNS": {"on_busy": "later"}}, "sessions_app.E030"),
        ({"TURNS": {"agent": "../x"}}, "sessions_app.E030"),
        ({"TURN_LEASE_SECONDS": 0}, "sessions_app.E031"),
        ({"TURN_MAX_ATTEMPTS": 1.5}, "sessions_app.E031"),
        (
            {"AGENT_GATEWAYS": {"assistant": {"protocol": "smoke", "url": "http://x/"}}},
            "sessions_app.E032",
        ),
    ],
)
def test_each_bad_setting_has_its_check(value, expected, settings):
    assert expected in ids(value, settings)


def test_a_missing_channel_layer_is_reported(settings):
    settings.CHANNEL_LAYERS = {}
    assert "sessions_app.E005" in ids({}, settings)


# --- the demo site's start-up and deploy settings -------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {  # what docs/operations.md recommends
    "SECRET_KEY": "p" + secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "HTTPS": "1",
}


def manage(*args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_demo_site_refuses_to_start_without_a_secret_key():
    started = manage("check")
    assert started.returncode != 0
    assert "SECRET_KEY is not set" in started.stderr and "DEBUG=1" in started.stderr


# The demo site (config.settings) needs both apps and their extras: a site that installs
# sessions_app alone (CI's single-app run) cannot start it.
demo_site = pytest.mark.skipif(
    not apps.is_installed("config"), reason="runs the demo site, which installs both apps"
)


@demo_site
def test_a_site_with_debug_and_the_demo_key_is_warned_about():
    checked = manage("check", DEBUG="1")
    assert checked.returncode == 0
    assert "sessions_app.W030" in checked.stderr and "sessions_app.W031" in checked.stderr


@demo_site
def test_the_documented_production_settings_pass_check_deploy():
    checked = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert checked.returncode == 0, checked.stderr
    assert "no issues" in checked.stdout


def test_our_security_checks_see_the_public_key_and_debug(settings):
    settings.SECRET_KEY = "django-insecure-anything"
    settings.DEBUG = True
    assert {"sessions_app.W030", "sessions_app.W031"} <= ids({}, settings)
