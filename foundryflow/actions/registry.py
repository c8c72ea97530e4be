"""Finds actions through the ``foundryflow.actions`` entry-point group.

The entry-point name *is* the action name used in specs (``guardrail.deploy_models``), so
the set of known actions is known without importing any of them; importing happens on
first use and an import failure is reported as "registered but not implemented" rather
than crashing whoever asked.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from foundryflow.actions.base import Action

GROUP = "foundryflow.actions"


class UnknownActionError(LookupError):
    """No entry point of that name."""


class ActionNotImplementedError(LookupError):
    """An entry point exists but does not load to an action class."""


class ActionRegistry:
    def __init__(self, group: str = GROUP) -> None:
        self._group = group
        self._entry_points: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, type[Action]] = {}

    def _points(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self._group)}
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(self._points().keys() | self._loaded.keys())

    def get(self, name: str) -> type[Action]:
        if name in self._loaded:
            return self._loaded[name]
        point = self._points().get(name)
        if point is None:
            raise UnknownActionError(f"unknown action {name!r}")
        try:
            loaded = point.load()
        except (ImportError, AttributeError) as exc:
            raise ActionNotImplementedError(
                f"action {name!r} is registered ({point.value}) but not implemented: {exc}"
            ) from exc
        if not (isinstance(loaded, type) and issubclass(loaded, Action)):
            raise ActionNotImplementedError(
                f"action {name!r} ({point.value}) is not a foundryflow Action class"
            )
        if loaded.meta.name != name:
            raise ActionNotImplementedError(
                f"entry point {name!r} loads an action named {loaded.meta.name!r}"
            )
        self._loaded[name] = loaded
        return loaded

    def status(self, name: str) -> str | None:
        """None when the action is usable, else the reason it is not."""
        try:
            self.get(name)
        except LookupError as exc:
            return str(exc)
        return None


registry = ActionRegistry()
"""The process-wide registry; entry points are read once, on first use."""
