"""Running the audit: check the target, observe it (``probes``), judge what was seen
(``sessions_app.domain.audit``). Imported on first use through ``sessions_app.audit``."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import replace

from sessions_app.audit.probes import AuditInputError, Target, observe
from sessions_app.domain import audit as verdicts
from sessions_app.domain.audit import Report


async def audit(
    url: str,
    protocol: str = "sse",
    *,
    headers: Mapping[str, str] | None = None,
    prompt: str | None = None,
    thread: str = "",
    model: str = "gpt-4o-mini",
    timeout: float = 60.0,  # noqa: ASYNC109 (each stream's bound, not the whole audit's)
    settle: float | None = None,
    verify: bool | ssl.SSLContext = True,
) -> Report:
    """Run the audit on the running event loop; bad input is a report, never an exception.

    ``timeout`` bounds each stream (seconds); ``settle`` overrides the pause before a plain
    SSE way back; ``verify`` is httpx's (False, or an ``ssl.SSLContext`` for a private CA).
    """
    target = Target(url, protocol, dict(headers or {}), thread=thread, model=model)
    target = replace(target, timeout=timeout, settle=settle, prompt=prompt or target.prompt)
    try:
        target = target.checked()
    except AuditInputError as error:
        return verdicts.blocked(url, protocol, str(error))
    return verdicts.report(await observe(target, verify=verify))


def run_audit(url: str, protocol: str = "sse", **options: object) -> Report:
    """:func:`audit` from synchronous code (its own event loop)."""
    return asyncio.run(audit(url, protocol, **options))  # type: ignore[arg-type]
