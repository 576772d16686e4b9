"""Settings of the idle-sockets benchmark (bench/idle_sockets.py): the sessions-log bench's,
with the periodic access re-check of every open socket (ACCESS_RECHECK_SECONDS, default 30)
made rare. At thousands of sockets that re-check (a few queries per socket) takes the
database threads that connects and subscribes need, and 10,000 sockets would take half an
hour to open on a loaded 2-core machine; it costs time, not memory, which is what this
benchmark measures.
"""

from __future__ import annotations

from bench.sessions_settings import *  # noqa: F403
from bench.sessions_settings import SESSIONS_APP as _BASE

SESSIONS_APP = {**_BASE, "ACCESS_RECHECK_SECONDS": 3600.0}
