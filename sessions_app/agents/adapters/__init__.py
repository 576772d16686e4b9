"""Adapters that answer turns with an agent framework: one module per framework, each with a
``handler(...)`` that returns ``async def answer(turn, run)``.

- ``pydantic_ai``: a pydantic-ai ``Agent`` (extra ``pydantic-ai``)
- ``langgraph``: a compiled LangGraph graph (extra ``langgraph``)
- ``openai_agents``: an OpenAI Agents SDK ``Agent`` (extra ``openai-agents``)
- ``openai_compat``: any OpenAI-compatible Chat Completions endpoint (httpx only)

The framework is imported by the module that adapts it, never here; none imports Django, so
a worker on another machine can use them with the SDK alone. See docs/sessions/agents.md.
"""
