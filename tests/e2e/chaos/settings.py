"""The demo site's settings with the limits the chaos tests exercise made small."""

from config.settings import *  # noqa: F403
from config.settings import SESSIONS_APP

SESSIONS_APP = {
    **SESSIONS_APP,
    "MAX_BUFFERED_BYTES": 1024 * 1024,  # past 1 MiB waiting, nothing more is sent ...
    "SLOW_CONSUMER_TIMEOUT": 1.0,  # ... and a socket that reads nothing for 1 s is cut
    "AGENT_HEARTBEAT_TIMEOUT": 3,  # seconds without a sign of life before agent_lost
    "TOKEN_MAX_AGE": 3600,  # the bench run outlives the default 300 s
    "MAX_FRAMES_PER_SECOND": 1000,
    "FRAME_BURST": 2000,
}
