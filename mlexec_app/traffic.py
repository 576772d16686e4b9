"""Measured traffic: the site's ``TRAFFIC_SOURCE`` asked about one agent.

mlexec_app never imports the app that logs the traffic; the site names a function in
``MLEXEC_APP["TRAFFIC_SOURCE"]`` (an operator's setting, checked at start-up by
``mlexec_app.E009``, never a caller's value) that takes an agent name and returns a
:class:`~mlexec_app.methodology.cost.Traffic` or ``None``. A source that fails or answers
nonsense never breaks a page: it is logged and the page says the traffic is unavailable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.utils.module_loading import import_string

from mlexec_app.conf import get_config
from mlexec_app.methodology.cost import Traffic

logger = logging.getLogger(__name__)

UNAVAILABLE = "Traffic unavailable: the traffic source failed (the server log says why)."


@dataclass(frozen=True)
class Reading:
    """The traffic of one agent, or why there is none (``note``)."""

    agent: str
    traffic: Traffic | None
    note: str = ""
    failed: bool = False


def read(agent: str) -> Reading:
    """What the site's traffic source measured of ``agent``; never raises."""
    path = get_config()["TRAFFIC_SOURCE"]
    if not agent:
        return Reading(agent, None, "No agent named on this project.")
    if not path:
        return Reading(agent, None, "No traffic source configured (MLEXEC_APP['TRAFFIC_SOURCE']).")
    try:
        found = import_string(path)(agent)
        if found is not None:
            if not isinstance(found, Traffic):
                raise TypeError(f"returned a {type(found).__name__}, not a Traffic")
            found.validate()
    except Exception:  # the site's code: whatever it raises, the page still renders
        logger.exception("MLEXEC_APP['TRAFFIC_SOURCE'] %s failed for agent %r", path, agent)
        return Reading(agent, None, UNAVAILABLE, failed=True)
    if found is None:
        return Reading(agent, None, f"No traffic measured for agent {agent!r}.")
    return Reading(agent, found)
