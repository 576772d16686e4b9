"""Stream a chat completion from any OpenAI-compatible endpoint (``/chat/completions``).

Moved to ``sessions_app.agents.adapters.openai_compat`` (which also has the turn handler);
these names stay importable from here.
"""

from __future__ import annotations

from sessions_app.agents.adapters.openai_compat import _DONE, LLMSettings, _delta, stream_chat

__all__ = ["LLMSettings", "_DONE", "_delta", "stream_chat"]
