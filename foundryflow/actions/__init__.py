"""Actions: the real work behind pipeline steps, found through entry points."""

from foundryflow.actions.base import (
    Action,
    ActionContext,
    ActionMeta,
    ActionOutputs,
    ActionParams,
    ExecutionMode,
)
from foundryflow.actions.registry import (
    ActionNotImplementedError,
    ActionRegistry,
    UnknownActionError,
    registry,
)

__all__ = [
    "Action",
    "ActionContext",
    "ActionMeta",
    "ActionNotImplementedError",
    "ActionOutputs",
    "ActionParams",
    "ActionRegistry",
    "ExecutionMode",
    "UnknownActionError",
    "registry",
]
