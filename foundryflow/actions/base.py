"""What an action is: typed params in, typed outputs out, optional compensation.

Actions know nothing of Airflow or Argo. The runtime validates step params against
``Params`` before ``run`` is called, so an action body only ever sees valid input, and it
stores ``Outputs`` so that later steps and the status views read one place.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session


class ExecutionMode(StrEnum):
    """How an action does its work; ``event_driven`` actions wait on outside systems."""

    SYNC = "sync"
    EVENT_DRIVEN = "event_driven"


@dataclass(frozen=True)
class ActionMeta:
    name: str
    description: str
    execution_mode: ExecutionMode = ExecutionMode.SYNC
    timeout_seconds: int | None = None
    idempotent: bool = False
    """Safe to run again after a failure; the seed forbids retrying the others automatically."""


class ActionParams(BaseModel):
    """Base of every action's params model: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ActionOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")


ParamsT = TypeVar("ParamsT", bound=ActionParams)
OutputsT = TypeVar("OutputsT", bound=ActionOutputs)


@dataclass
class ActionContext:
    """What a running action may know about and touch, whichever engine started it."""

    execution_id: UUID
    pipeline: str
    step_id: str
    attempt: int
    map_index: int | None
    session_factory: Callable[[], Session]
    log: logging.Logger
    publish: Callable[[str, dict[str, Any]], None] = field(repr=False)
    """Append an event (type, fields) to the execution's callback topics."""


class Action(ABC, Generic[ParamsT, OutputsT]):
    meta: ClassVar[ActionMeta]
    Params: ClassVar[type[ActionParams]]
    Outputs: ClassVar[type[ActionOutputs]]

    @abstractmethod
    def run(self, ctx: ActionContext, params: ParamsT) -> OutputsT:
        """Do the work; raise to fail the step (the message is shown to the user)."""

    def compensate(self, ctx: ActionContext, params: ParamsT, outputs: OutputsT) -> None:
        """Undo what a successful ``run`` did; called in reverse order on rollback."""
        raise NotImplementedError

    @classmethod
    def can_compensate(cls) -> bool:
        return cls.compensate is not Action.compensate
