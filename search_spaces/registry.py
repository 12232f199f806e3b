"""Name -> object registries filled by decorators, with one factory that fails loudly on unknown names."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from search_spaces.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, KeyError):
    """An unknown registry name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of factories: `@registry.register("name")` then `registry.create("name")`."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[name] = factory
            return factory
        return decorator

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.what} {name!r}; known: {', '.join(self.names()) or 'none'}")
        return self._items[name]

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._items
