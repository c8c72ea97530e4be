"""Run parameters at the boundary: every entry point rejects the same bad input."""

from __future__ import annotations

from typing import Any

import pytest

from foundryflow.spec.model import Parameter, Pipeline
from foundryflow.spec.params import ParamsError, parse_text_value, text_value, validate_run_params

PIPELINE = Pipeline.model_validate(
    {
        "name": "p",
        "parameters": [
            {"name": "count", "type": "integer", "required": True, "minimum": 1, "maximum": 10},
            {"name": "ratio", "type": "number", "default": 0.5},
            {
                "name": "mode",
                "type": "string",
                "enum": ["dedicated", "shared"],
                "default": "shared",
            },
            {"name": "flag", "type": "boolean", "default": False},
            {"name": "items", "type": "array"},
            {"name": "config", "type": "object"},
            {"name": "anything", "type": "json"},
        ],
        "steps": [{"id": "a", "action": "test.echo"}],
    }
)


def test_defaults_are_applied() -> None:
    assert validate_run_params(PIPELINE, {"count": 2}) == {
        "count": 2,
        "ratio": 0.5,
        "mode": "shared",
        "flag": False,
        "items": None,
        "config": None,
        "anything": None,
    }


def test_valid_values_keep_their_types() -> None:
    params = validate_run_params(
        PIPELINE,
        {
            "count": 10,
            "ratio": 2,
            "flag": True,
            "items": [1, "a"],
            "config": {"k": [1]},
            "anything": "s",
        },
    )
    assert params["ratio"] == 2 and params["items"] == [1, "a"] and params["config"] == {"k": [1]}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({}, "count: Field required"),
        ({"count": "3"}, "count: Input should be a valid integer"),
        ({"count": True}, "count: Input should be a valid integer"),
        ({"count": 3.5}, "count: Input should be a valid integer"),
        ({"count": 0}, "count: Input should be greater than or equal to 1"),
        ({"count": 11}, "count: Input should be less than or equal to 10"),
        ({"count": 1, "mode": "gpu"}, "mode: Input should be 'dedicated' or 'shared'"),
        ({"count": 1, "flag": "yes"}, "flag: Input should be a valid boolean"),
        ({"count": 1, "items": {"a": 1}}, "items: Input should be a valid list"),
        ({"count": 1, "config": [1]}, "config: Input should be a valid dictionary"),
        ({"count": 1, "typo": 1}, "typo: unknown parameter"),
        ("not an object", "must be a JSON object"),
    ],
)
def test_bad_params_are_rejected_with_the_parameter_named(raw: Any, fragment: str) -> None:
    with pytest.raises(ParamsError) as info:
        validate_run_params(PIPELINE, raw)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("parameter", "text", "value"),
    [
        ({"name": "s", "type": "string"}, "''' $(rm -rf /) {{x}}", "''' $(rm -rf /) {{x}}"),
        ({"name": "s", "type": "string", "required": True}, "", ""),
        ({"name": "s", "type": "string"}, "", None),
        ({"name": "i", "type": "integer"}, "42", 42),
        ({"name": "b", "type": "boolean"}, "True", True),
        ({"name": "b", "type": "boolean"}, "false", False),
        ({"name": "j", "type": "json"}, '[{"a": 1}]', [{"a": 1}]),
        ({"name": "o", "type": "object"}, "", None),
    ],
)
def test_text_values_from_argo(parameter: dict[str, Any], text: str, value: Any) -> None:
    param = Parameter.model_validate(parameter)
    assert parse_text_value(param, text) == value
    if value is not None:
        assert parse_text_value(param, text_value(param, value)) == value


def test_unparseable_text_names_the_parameter() -> None:
    with pytest.raises(ParamsError, match="parameter 'i': 'abc' is not a valid integer"):
        parse_text_value(Parameter(name="i", type="integer"), "abc")
