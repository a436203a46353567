"""`Registry`: one name -> constructor table of one kind (attention block, norm, decoder, ...), with one error.

    NORMS = Registry("norm")

    @NORMS.register("batch")
    def _batch(channels: int) -> nn.Module: ...

    NORMS.build("batch", 64)     # -> the module
    NORMS.get("bogus")           # ValueError: unknown norm 'bogus'; valid: batch, ...

Names list in registration order, or sorted (``sort=True``, after the names in ``first``) where the registration
order depends on import order. `build` passes every keyword through to the constructor: a keyword it does not
take is a ValueError naming the entry and the keyword (timm's ``create_attn`` idea: a mistyped option fails
loudly instead of vanishing). Imports nothing but the standard library.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Name -> constructor (class or function) of one ``kind`` (a noun used in the messages, e.g. "norm")."""

    def __init__(self, kind: str, *, sort: bool = False, first: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.sort, self.first = sort, tuple(first)
        self._table: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """Register ``obj`` under ``name``; without ``obj``, a decorator. A name registered twice is a KeyError."""
        def add(item: T) -> T:
            if name in self._table:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._table[name] = item
            return item
        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """The constructor of ``name``; ValueError ``unknown <kind> 'x'; valid: a, b`` if there is none."""
        try:
            return self._table[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}") from None

    def build(self, name: str, *args, **kwargs):
        """``get(name)(*args, **kwargs)``; a keyword the constructor does not take is a ValueError naming both."""
        factory = self.get(name)
        self.check_kwargs(name, kwargs)
        return factory(*args, **kwargs)

    def _parameters(self, name: str) -> list[inspect.Parameter] | None:
        """Keyword-capable parameters of ``name``'s constructor; None if it takes ``**kwargs`` or has no signature."""
        try:
            params = list(inspect.signature(self.get(name)).parameters.values())
        except (TypeError, ValueError):
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def options(self, name: str) -> list[str] | None:
        """Names of the optional keywords (those with a default) of ``name``; None when any keyword is taken."""
        params = self._parameters(name)
        return None if params is None else [p.name for p in params if p.default is not inspect.Parameter.empty]

    def check_kwargs(self, name: str, kwargs: Iterable[str]) -> None:
        """ValueError ``<kind> 'x' takes no option 'k' (its options: ...)`` for a keyword ``name`` does not take."""
        params = self._parameters(name)
        if params is None:
            return
        bad = [k for k in kwargs if k not in {p.name for p in params}]
        if bad:
            valid = self.options(name)
            takes = f"its options: {', '.join(valid)}" if valid else "it takes no options"
            raise ValueError(f"{self.kind} {name!r} takes no option {', '.join(map(repr, bad))} ({takes})")

    def names(self) -> list[str]:
        """Registered names: registration order, or (``sort``) the registered ``first`` names then the rest sorted."""
        if not self.sort:
            return list(self._table)
        head = [n for n in self.first if n in self._table]
        return head + sorted(n for n in self._table if n not in head)

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._table)})"
