import pytest
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
        ({"RETENTION_DAYS": -1}, "sessions_app.E003"),
        ({"GROUP_COMMIT_WINDOW": 5}, "sessions_app.E004"),
    ],
)
def test_each_bad_setting_has_its_check(value, expected, settings):
    assert expected in ids(value, settings)


def test_a_missing_channel_layer_is_reported(settings):
    settings.CHANNEL_LAYERS = {}
    assert "sessions_app.E005" in ids({}, settings)
