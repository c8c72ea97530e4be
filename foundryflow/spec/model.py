"""The pipeline spec: the seeds' YAML pipeline format as typed pydantic models.

These models check the *shape* of one spec (types, names, bounds). Checks that need the
whole graph or the action registry (cycles, references, unknown actions) live in
:mod:`foundryflow.spec.validate`, so each kind of problem has exactly one home.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

ParameterType = Literal["string", "integer", "number", "boolean", "json", "array", "object"]
OnFailure = Literal["fail", "continue", "rollback"]

STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"
"""Step ids are identifiers (templates read ``steps.<id>``) short enough for Argo names."""
RESERVED_PREFIX = "ff_"
"""Prefix of the tasks the compilers add around the steps (start, rollback, finish)."""
PIPELINE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$"
"""DNS-1123 label short enough to name an Argo WorkflowTemplate and an Airflow DAG."""
CRON_FIELD = re.compile(
    r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$|^[A-Za-z]{3}(-[A-Za-z]{3})?$"
)

FINAL_EXECUTION_FIELDS = frozenset({"status", "error_message"})
"""Execution fields known only once the regular steps are over (read by finally steps)."""
EXECUTION_FIELDS = frozenset({"id", "pipeline", "version", "engine", "run_id", "started_at"}) | (
    FINAL_EXECUTION_FIELDS
)

PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def value_matches_type(value: Any, type_: ParameterType) -> bool:
    """JSON-level type check: ``True`` is not an integer and ``1`` is not a string."""
    if type_ == "json":
        return True
    if isinstance(value, bool) and type_ != "boolean":
        return False
    return isinstance(value, PYTHON_TYPES[type_])


class Parameter(_Strict):
    """One run-time input of a pipeline; becomes an Airflow ``Param`` and an Argo argument."""

    name: Identifier
    type: ParameterType = "string"
    required: bool = False
    default: Any = None
    enum: list[Any] | None = Field(default=None, min_length=1)
    description: str | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set and self.default is not None

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        if (self.minimum is not None or self.maximum is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError(f"minimum/maximum apply to integer and number, not {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum:g} is greater than maximum {self.maximum:g}")
        for value in self.enum or []:
            if not value_matches_type(value, self.type):
                raise ValueError(f"enum value {value!r} is not of type {self.type}")
        if self.has_default:
            problem = self.check_value(self.default)
            if problem:
                raise ValueError(f"default {self.default!r}: {problem}")
        return self

    def check_value(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or None if it is."""
        if not value_matches_type(value, self.type):
            return f"expected {self.type}, got {type(value).__name__}"
        if self.enum is not None and value not in self.enum:
            return f"must be one of {self.enum}"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum:g}"
        return None


class PipelineSettings(_Strict):
    on_failure: OnFailure = "fail"
    timeout_seconds: int | None = Field(default=None, gt=0)
    schedule: str | None = Field(
        default=None, description="Cron expression: a cron DAG on Airflow, a CronWorkflow on Argo."
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None or value.startswith("@"):
            if value not in (None, "@hourly", "@daily", "@weekly", "@monthly", "@yearly"):
                raise ValueError(f"unknown cron macro {value!r}")
            return value
        fields = value.split()
        if len(fields) != 5 or not all(CRON_FIELD.match(field) for field in fields):
            raise ValueError(f"{value!r} is not a 5-field cron expression")
        return value


class Step(_Strict):
    """One node of the pipeline graph; ``action`` names a ``foundryflow.actions`` entry point."""

    id: Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN)]
    name: str | None = None
    action: Annotated[str, StringConstraints(min_length=1)]
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    condition: str | None = None
    timeout_seconds: int | None = Field(default=None, gt=0)
    foreach: str | list[Any] | None = Field(
        default=None, description="A list (or a template yielding one): the step runs per item."
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith(RESERVED_PREFIX):
            raise ValueError(f"step ids starting with {RESERVED_PREFIX!r} are reserved")
        return value

    @field_validator("condition", mode="before")
    @classmethod
    def _condition_text(cls, value: Any) -> Any:
        # YAML turns ``condition: true`` into a bool; keep it as the equivalent template.
        return "{{ true }}" if value is True else "{{ false }}" if value is False else value

    @property
    def title(self) -> str:
        return self.name or self.id

    @property
    def is_finally(self) -> bool:
        """A step whose condition reads ``execution.status`` runs after all regular steps.

        The seeds express rollback as such a step (``condition: "{{ execution.status ==
        'FAILED' }}"``); its condition can only be decided once the regular steps are over,
        so it runs in the closing phase, like an Argo ``onExit`` handler.
        """
        from foundryflow.spec.templating import references

        return any(
            ref.root == "execution" and ref.path[:1] and ref.path[0] in FINAL_EXECUTION_FIELDS
            for ref in references(self.condition)
        )


class Pipeline(_Strict):
    name: Annotated[str, StringConstraints(pattern=PIPELINE_NAME_PATTERN)]
    version: str = "1.0"
    description: str = ""
    parameters: list[Parameter] = Field(default_factory=list)
    settings: PipelineSettings = Field(default_factory=PipelineSettings)
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # ``version: 1.0`` unquoted in YAML is a float; the seeds mean the string "1.0".
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"pipeline {self.name!r} has no step {step_id!r}")

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(f"pipeline {self.name!r} has no parameter {name!r}")

    @property
    def regular_steps(self) -> list[Step]:
        return [step for step in self.steps if not step.is_finally]

    @property
    def finally_steps(self) -> list[Step]:
        return [step for step in self.steps if step.is_finally]
