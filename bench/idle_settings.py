"""Settings of the idle-sockets benchmark (bench/idle_sockets.py): the sessions-log bench's,
with the periodic access re-check of every open socket at its default (ACCESS_RECHECK_SECONDS,
30 s), or at ``BENCH_ACCESS_RECHECK_SECONDS`` when set. The re-check used to cost a few queries
per socket and at thousands of sockets took the database threads connects need (this file set
it to an hour then); it is now a fixed number of queries per worker and interval.
"""

from __future__ import annotations

import os

from bench.sessions_settings import *  # noqa: F403
from bench.sessions_settings import SESSIONS_APP as _BASE

_RECHECK = os.environ.get("BENCH_ACCESS_RECHECK_SECONDS")
SESSIONS_APP = {**_BASE, **({"ACCESS_RECHECK_SECONDS": float(_RECHECK)} if _RECHECK else {})}
