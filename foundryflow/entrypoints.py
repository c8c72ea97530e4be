"""Plug-ins found through an entry-point group: actions and benchmark runners.

The entry-point name *is* the name used in specs and on command lines, so the set of known
names is known without importing anything; a class is imported on first use, and one that
is registered but does not import (or is not the right kind of class, or declares another
name) is reported as "registered but not implemented" rather than crashing whoever asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")


class EntryPointRegistry(ABC, Generic[T]):
    """Classes by name from one entry-point group.

    ``entry_points`` replaces the installed metadata (tests, embedding); by default the
    group's installed entry points are read once, on first use.
    """

    kind: ClassVar[str]
    """What is registered, for messages: "action", "runner"."""
    unknown_error: ClassVar[type[LookupError]]
    not_implemented_error: ClassVar[type[LookupError]]

    def __init__(self, group: str, entry_points: Iterable[EntryPoint] | None = None) -> None:
        self._group = group
        self._entry_points: dict[str, EntryPoint] | None = (
            None if entry_points is None else {ep.name: ep for ep in entry_points}
        )
        self._loaded: dict[str, type[T]] = {}

    @abstractmethod
    def _accepts(self, loaded: Any) -> bool:
        """Whether an entry point's object is a class of the registered kind."""

    @abstractmethod
    def _declared_name(self, cls: type[T]) -> str | None:
        """The name the class says it has; it must equal its entry-point name."""

    def _points(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self._group)}
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(self._points().keys() | self._loaded.keys())

    def get(self, name: str) -> type[T]:
        if name in self._loaded:
            return self._loaded[name]
        point = self._points().get(name)
        if point is None:
            raise self.unknown_error(f"unknown {self.kind} {name!r}")
        try:
            loaded = point.load()
        except (ImportError, AttributeError) as exc:
            raise self.not_implemented_error(
                f"{self.kind} {name!r} is registered ({point.value}) but not implemented: {exc}"
            ) from exc
        if not self._accepts(loaded):
            raise self.not_implemented_error(
                f"{self.kind} {name!r} ({point.value}) is not a foundryflow {self.kind} class"
            )
        declared = self._declared_name(loaded)
        if declared != name:
            raise self.not_implemented_error(
                f"entry point {name!r} loads a {self.kind} named {declared!r}"
            )
        self._loaded[name] = loaded
        return loaded

    def status(self, name: str) -> str | None:
        """None when ``name`` is usable, else the reason it is not."""
        try:
            self.get(name)
        except LookupError as exc:
            return str(exc)
        return None
