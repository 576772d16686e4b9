"""The WebSocket origin check compares scheme, host and port, over the real ASGI stack."""

from __future__ import annotations

import pytest

from sessions_app.origins import OriginValidator
from tests.sessions_app.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)


async def opens(alice, origin: str, host: str = "localhost:8000", **extra: bytes) -> bool:
    headers = [(b"origin", origin.encode()), (b"host", host.encode())]
    headers += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    async with connect(alice, headers=headers) as client:
        return client.connected


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:8000", True),  # the page the socket was served from
        ("https://localhost:8000", False),  # another scheme
        ("http://localhost:9000", False),  # another port on the same host
        ("http://localhost", False),  # the default port is a port too
        ("http://localhost:99999", False),  # malformed: refused, no crash
        ("http://evil.example:8000", False),
        ("null", False),
    ],
)
async def test_an_allowed_host_accepts_only_its_own_scheme_and_port(alice, origin, allowed):
    assert await opens(alice, origin) is allowed


async def test_behind_a_tls_proxy_the_forwarded_scheme_counts(alice, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    secure = {"x_forwarded_proto": b"https"}
    assert await opens(alice, "https://localhost", host="localhost", **secure)
    assert not await opens(alice, "http://localhost", host="localhost", **secure)


async def test_listed_origins_name_scheme_host_and_port(alice, settings):
    settings.SESSIONS_APP = {
        "ALLOWED_ORIGINS": ["https://chat.example.com", "http://localhost:5173"]
    }
    assert await opens(alice, "https://chat.example.com")
    assert await opens(alice, "https://chat.example.com:443")
    assert await opens(alice, "http://localhost:5173")  # e.g. a front end's dev server
    assert not await opens(alice, "http://chat.example.com")
    assert not await opens(alice, "https://chat.example.com:8443")
    assert not await opens(alice, "http://localhost:8000")  # not listed, even if same-origin


def test_a_secure_socket_is_an_https_origin():
    check = OriginValidator(None).origin_allowed
    wss = {"scheme": "wss", "headers": [(b"host", b"localhost")]}
    assert check("https://localhost", wss) and not check("http://localhost", wss)
