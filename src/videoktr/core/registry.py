"""Name -> object registries for the variants of the algorithm (scopes, metrics, aggregations, ...).

Every place where the user picks a variant by name looks it up in a :class:`Registry`, so that an unknown name
fails with one message listing the valid names::

    SCOPES = Registry("selection scope")

    @SCOPES.register("group")
    def _group(...): ...

    SCOPES.get("grp")  # UnknownNameError: unknown selection scope 'grp'; valid: batch, group, sequence
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from videoktr.errors import UserError  # plain Python (no dependency): core stays torch-only

T = TypeVar("T")

__all__ = ["Registry", "UnknownNameError"]


class UnknownNameError(KeyError, UserError):
    """A name that is not in a :class:`Registry`; the message lists the valid names. Names come from the user (a
    config field, ``--bench``), so it is also a :class:`~videoktr.errors.UserError`: a message and exit 2."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind = kind
        self.name = name
        self.valid = valid
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to objects of one kind (``kind`` names it in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers the decorated object under ``name`` and returns it unchanged."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``; registering a name twice is an error (no silent override)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        """The object registered under ``name``; raises :class:`UnknownNameError` listing the valid names."""
        if name not in self._items:
            raise UnknownNameError(self.kind, name, self.names())
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
