"""Name → object tables for datasets, backbones and backends, each filled in one place
from the entries' own `name`: a duplicate or unknown name fails loudly and lists the names
that exist, so no caller needs an if/elif chain on names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from dynaprune_edge.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entries: Iterable[T]) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise ValueError(f"{kind} {entry.name!r} is registered twice")
            self._entries[entry.name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)
