"""Validating the parameters a run is started with: the boundary where user input enters.

One pydantic model is built per pipeline from its ``parameters`` so that every entry
point (Airflow trigger form, ``foundryflow run --conf``, Argo ``-p``) rejects the same bad
input with the same message before anything is written.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

from foundryflow.spec.model import Parameter, Pipeline

_BASE_TYPES: dict[str, Any] = {
    "string": StrictStr,
    "integer": StrictInt,
    "number": StrictInt | StrictFloat,
    "boolean": StrictBool,
    "array": list[JsonValue],
    "object": dict[str, JsonValue],
    "json": JsonValue,
}


class ParamsError(ValueError):
    """Run parameters are invalid; the message lists every problem by parameter name."""


def _annotation(parameter: Parameter) -> Any:
    base: Any = _BASE_TYPES[parameter.type]
    if parameter.enum is not None:
        base = Literal[tuple(parameter.enum)]
    constraints = Field(
        ge=parameter.minimum, le=parameter.maximum, description=parameter.description
    )
    annotated = Annotated[base, constraints]
    return annotated if parameter.required else annotated | None


def params_model(pipeline: Pipeline) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for parameter in pipeline.parameters:
        default = ... if parameter.required and not parameter.has_default else parameter.default
        fields[parameter.name] = (_annotation(parameter), default)
    return create_model(
        f"{pipeline.name}-params",
        __config__=ConfigDict(extra="forbid", strict=True),
        **fields,
    )


def validate_run_params(pipeline: Pipeline, raw: Any) -> dict[str, Any]:
    """Defaults applied and every value checked; raises ParamsError naming each problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"parameters of {pipeline.name!r} must be a JSON object, got {raw!r}")
    try:
        validated = params_model(pipeline).model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "(parameters)"
            message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
            lines.append(f"  {name}: {message}")
        declared = ", ".join(p.name for p in pipeline.parameters) or "none"
        raise ParamsError(
            f"invalid parameters for pipeline {pipeline.name!r} (declared: {declared}):\n"
            + "\n".join(lines)
        ) from None
    return validated.model_dump(mode="json")


def parse_text_value(parameter: Parameter, text: str) -> Any:
    """Argo hands every parameter over as text; turn it back into the declared type.

    An empty text means "not given" for optional parameters (Argo needs a value for every
    argument it substitutes), so it becomes None and the default applies.
    """
    if text == "" and not parameter.required:
        return None
    if parameter.type == "string":
        return text
    if parameter.type == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ParamsError(
            f"parameter {parameter.name!r}: {text!r} is not a valid {parameter.type} value"
        ) from None


def text_value(parameter: Parameter, value: Any) -> str:
    """The inverse of :func:`parse_text_value`, for Argo argument defaults."""
    if value is None:
        return ""
    if parameter.type == "string":
        return str(value)
    return json.dumps(value)
