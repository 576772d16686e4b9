"""Each error carries the HTTP status and WebSocket close code every door answers it with."""

import pytest

from sessions_app.domain import errors

pytestmark = pytest.mark.engine_independent

EXPECTED = {
    errors.BadRequest: (400, None),
    errors.BadEvent: (400, None),
    errors.Unauthenticated: (401, 4401),
    errors.Forbidden: (403, None),
    errors.CsrfFailed: (403, None),
    errors.NotFound: (404, None),
    errors.StreamClosed: (409, None),
    errors.ProducerStaleEpoch: (409, None),
    errors.RunExists: (409, None),
    errors.OffsetExpired: (410, None),
    errors.LimitExceeded: (413, None),
    errors.RateLimited: (429, None),
    errors.SlowConsumer: (413, 4008),
    errors.Unavailable: (503, None),
}


def test_every_error_names_its_status_and_close_code() -> None:
    for cls, (status, close_code) in EXPECTED.items():
        assert (cls.status, cls.close_code) == (status, close_code), cls.__name__


def test_a_rate_limit_keeps_the_code_clients_match_on() -> None:
    refused = errors.RateLimited("too many frames; slow down", limit="frames_per_second")
    assert refused.as_dict()["code"] == "limit_exceeded"
    assert isinstance(refused, errors.LimitExceeded)
