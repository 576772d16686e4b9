"""Template filters for error rates: ``{{ 0.085|points }}`` -> ``8.5 points``."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def points(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f} points"


@register.filter
def pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"
