"""Rules as small classes with ids, kept in registries (the shape of cleanlab's issue managers).

A rule has an ``id`` (stable, documented in docs/mlexec/index.md), a one-line ``title``, and
one method whose signature depends on the registry it lives in. Registries keep insertion
order, which is the order rules are evaluated and reported in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar


class Rule:
    """Base of every rule: an id and a title."""

    id: str = ""
    title: str = ""


R = TypeVar("R", bound=Rule)


class Registry(Generic[R]):
    """An ordered set of rules, looked up by id."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._rules: dict[str, R] = {}

    def register(self, rule_class: type[R]) -> type[R]:
        """Class decorator: instantiate the rule and file it under its id."""
        rule = rule_class()
        if not rule.id:
            raise ValueError(f"{rule_class.__name__} has no id.")
        if rule.id in self._rules:
            raise ValueError(f"Rule id {rule.id!r} is already registered in {self.name}.")
        self._rules[rule.id] = rule
        return rule_class

    def __iter__(self) -> Iterator[R]:
        return iter(self._rules.values())

    def __getitem__(self, rule_id: str) -> R:
        return self._rules[rule_id]

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules

    def ids(self) -> list[str]:
        return list(self._rules)
