"""Finds actions through the ``foundryflow.actions`` entry-point group; the entry-point
name is the action name used in specs (``guardrail.deploy_models``). How loading and its
errors work: :mod:`foundryflow.entrypoints`."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint
from typing import Any

from foundryflow.actions.base import Action
from foundryflow.entrypoints import EntryPointRegistry

GROUP = "foundryflow.actions"


class UnknownActionError(LookupError):
    """No entry point of that name."""


class ActionNotImplementedError(LookupError):
    """An entry point exists but does not load to an action class."""


class ActionRegistry(EntryPointRegistry[Action]):
    kind = "action"
    unknown_error = UnknownActionError
    not_implemented_error = ActionNotImplementedError

    def __init__(self, group: str = GROUP, entry_points: Iterable[EntryPoint] | None = None):
        super().__init__(group, entry_points)

    def _accepts(self, loaded: Any) -> bool:
        return isinstance(loaded, type) and issubclass(loaded, Action)

    def _declared_name(self, cls: type[Action]) -> str | None:
        return cls.meta.name


registry = ActionRegistry()
"""The process-wide registry; entry points are read once, on first use."""
