"""The agent side: handlers that answer turns, and what ships with the app.

``from sessions_app.agents import agent`` registers a handler (see ``base``); ``run_agents``
runs a worker that claims turns and calls them. ``demo`` is the demo site's scripted agent,
``openai_compat`` streams from any OpenAI-compatible endpoint.
"""

from sessions_app.agents.base import Handler, Registry, Turn, agent, registry

__all__ = ["Handler", "Registry", "Turn", "agent", "registry"]
