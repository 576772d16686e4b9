"""Settings of our site (config.settings) for the sessions-log benchmark.

Only what a benchmark needs differs: the per-connection frame rate limit (a flood guard of 50
frames/s, which a benchmark publisher exceeds on purpose) is lifted, tokens live an hour, and a
URLconf without the other apps' pages keeps the server independent of work in progress there.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403

SESSIONS_APP = {
    "MAX_FRAMES_PER_SECOND": 1_000_000,
    "FRAME_BURST": 1_000_000,
    "TOKEN_MAX_AGE": 3600,
}
ROOT_URLCONF = "bench.empty_urls"
