"""Name -> object registries filled by decorators, with one factory that fails loudly on unknown names."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from search_spaces.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, KeyError):
    """An unknown registry name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of factories: `@registry.register("name")` then `registry.create("name")`.

    `builtins` names the modules that register the built-in entries; they are imported at the first read
    (names, get, create, `in`), so a registry is complete whatever the caller imported before, and importing the
    registry alone stays light (the built-in spaces pull in torch)."""

    def __init__(self, what: str, builtins: tuple[str, ...] = ()):
        self.what = what
        self._items: dict[str, Callable[..., T]] = {}
        self._builtins = builtins

    def _load(self) -> None:
        while self._builtins:
            module, *rest = self._builtins
            self._builtins = tuple(rest)
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[name] = factory
            return factory
        return decorator

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., T]:
        self._load()
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.what} {name!r}; known: {', '.join(self.names()) or 'none'}")
        return self._items[name]

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items
