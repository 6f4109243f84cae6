"""Name → object tables for datasets, backbones and backends, each filled in one place
from the entries' own `name`: a duplicate or unknown name fails loudly and lists the names
that exist, so no caller needs an if/elif chain on names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from dynaprune_edge.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entries: Iterable[T], hint: str = "") -> None:
        """hint: what an unknown name's error adds (where other entries come from)."""
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: T) -> None:
        """Add `entry` under its name; the same entry again is a no-op, another under a
        taken name a ConfigError."""
        taken = self._entries.get(entry.name)
        if taken is not None and taken is not entry:
            raise ConfigError(
                f"{self.kind} name {entry.name!r} is taken (by {getattr(taken, '__qualname__', taken)!s})"
            )
        self._entries[entry.name] = entry

    @contextlib.contextmanager
    def scope(self) -> Iterator[Registry[T]]:
        """A block after which the entries registered in it are forgotten (a test, a script
        trying several backbones of its own)."""
        before = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(before)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            hint = f" ({self.hint})" if self.hint else ""
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}{hint}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)
