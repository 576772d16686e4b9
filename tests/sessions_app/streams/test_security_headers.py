"""Every page of the site and the Durable Streams fast path send the same security headers.

The fast path (``with_streams``) skips the site's middleware, which is where Django sets
X-Frame-Options, X-Content-Type-Options, Referrer-Policy, Cross-Origin-Opener-Policy and
Strict-Transport-Security. This walks every URL pattern of the site (config.urls) with an
anonymous caller, through the middleware, and compares each answer's security headers with
the fast path's, under settings other than Django's defaults so that a copied constant
would not pass.
"""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.test import AsyncClient, override_settings
from django.urls import URLResolver, get_resolver

from tests.sessions_app.streams.test_security import Door

# Judged on the demo site (config.urls and its security middleware), which installs both apps.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not apps.is_installed("config"), reason="needs the demo site"),
]

SECURITY_HEADERS = (
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "strict-transport-security",
)
SITE = {
    "X_FRAME_OPTIONS": "SAMEORIGIN",
    "SECURE_REFERRER_POLICY": "no-referrer",
    "SECURE_CROSS_ORIGIN_OPENER_POLICY": "same-origin-allow-popups",
    "SECURE_HSTS_SECONDS": 3600,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SESSIONS_APP": {"ANONYMOUS_STREAM_PREFIX": "public/", "SSE_MAX_SECONDS": 0.5},
}
PARAMETER = re.compile(r"<(?:\w+:)?\w+>")


def site_urls() -> list[str]:
    """One concrete URL per route pattern of the site (regex patterns are left out)."""

    def walk(patterns, prefix: str):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            else:
                yield route

    urls = {
        "/" + PARAMETER.sub("x", route)
        for route in walk(get_resolver().url_patterns, "")
        if "^" not in route and "(?" not in route
    }
    return sorted(urls)


def security_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in SECURITY_HEADERS if name in headers}


@override_settings(**SITE)
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_every_page_and_the_fast_path_send_the_same_security_headers(scheme):
    fast = Door("fast", scheme=scheme)
    # A created stream, a read of its body, and a refusal: every kind of answer the door gives.
    created = await fast.call(
        "PUT", "/v1/stream/public/h", "<svg/>", {"Content-Type": "image/svg+xml"}
    )
    answers = {
        "PUT /v1/stream/public/h (fast)": created,
        "GET /v1/stream/public/h (fast)": await fast.call("GET", "/v1/stream/public/h?offset=-1"),
        "GET /v1/stream/private (fast)": await fast.call("GET", "/v1/stream/private?offset=-1"),
        "GET /v1/stream/public/h sse (fast)": await fast.call(
            "GET", "/v1/stream/public/h?offset=now&live=sse"
        ),
    }
    assert created.status == 201
    expected = security_headers(answers["GET /v1/stream/public/h (fast)"].headers)
    assert expected["x-frame-options"] == "SAMEORIGIN"
    assert expected["referrer-policy"] == "no-referrer"
    assert expected["cross-origin-opener-policy"] == "same-origin-allow-popups"
    assert ("strict-transport-security" in expected) is (scheme == "https")
    differ = {
        what: security_headers(answer.headers)
        for what, answer in answers.items()
        if security_headers(answer.headers) != expected
    }
    client = AsyncClient()
    urls = site_urls()
    assert "/v1/stream/x" in urls and "/api/sessions/" in urls and len(urls) > 100
    for url in urls:
        response = await client.get(url, secure=scheme == "https")
        got = security_headers({k.lower(): v for k, v in response.items()})
        if got != expected:
            differ[f"GET {url} ({response.status_code})"] = got
    assert differ == {}, expected


@override_settings(SECURE_SSL_REDIRECT=True, SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": "public/"})
async def test_the_fast_path_redirects_to_https_as_the_site_does():
    answer = await Door("fast").call("GET", "/v1/stream/public/x?offset=-1")
    site = await AsyncClient().get("/api/sessions/")
    assert answer.status == site.status_code == 301
    assert answer["Location"] == "https://testserver/v1/stream/public/x?offset=-1"
