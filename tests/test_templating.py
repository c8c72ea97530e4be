"""The sandboxed expression language: native types, references, and hostile templates."""

from __future__ import annotations

from typing import Any

import pytest

from foundryflow.spec.templating import TemplateRenderError, references, render

CONTEXT: dict[str, Any] = {
    "params": {
        "models": [{"id": 1}, {"id": 2}],
        "flag": True,
        "name": "guard",
        "n": 3,
        "none": None,
    },
    "steps": {"a": {"status": "COMPLETED", "outputs": {"ids": ["x", "y"], "count": 2}}},
    "execution": {"status": "FAILED", "error_message": "step 'a' failed: boom", "id": "e1"},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ params.models }}", [{"id": 1}, {"id": 2}]),
        ("{{ params.flag }}", True),
        ("{{ params.n }}", 3),
        ("  {{ params.n }}  ", 3),
        ("{{ params.none }}", None),
        ("{{ steps.a.outputs.ids }}", ["x", "y"]),
        ("{{ steps.a.outputs['count'] + 1 }}", 3),
        ("{{ params.models | length }}", 2),
        ("{{ params.models[0].id }}", 1),
        ("{{ steps.b.outputs.x | default(none) }}", None),
        ("{{ steps.b.outputs.x | default([]) }}", []),
        ("{{ steps.b.outputs.x | default(params.n) }}", 3),
        ("{{ execution.status == 'FAILED' }}", True),
        ("name={{ params.name }} n={{ params.n }}", "name=guard n=3"),
        ("{{ params.models | tojson }}", '[{"id": 1}, {"id": 2}]'),
        ("plain text", "plain text"),
        (42, 42),
    ],
)
def test_render(template: Any, expected: Any) -> None:
    assert render(template, CONTEXT) == expected


def test_render_recurses_into_structures() -> None:
    value = {"a": ["{{ params.n }}", {"b": "{{ params.flag }}"}], "c": "x{{ params.n }}"}
    assert render(value, CONTEXT) == {"a": [3, {"b": True}], "c": "x3"}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ params.models.__class__.__base__.__subclasses__() }}", "unsafe"),
        ("{{ params.name.__init__.__globals__ }}", "unsafe"),
        ("{{ params.models.append(3) }}", "unsafe"),
        ("{{ params.models.pop() }}", "unsafe"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "statements",
        ),
        ("{{ 'a' * 1000000000 }}", "longer than"),
        ("{{ [1] * 100000000 }}", "longer than"),
        ("{{ (9 ** 9) ** (9 ** 9) }}", "exponent"),
        ("{{ 'x'.center(2000000000) }}", "larger than"),
        ("{{ range(10000000000) | list }}", "larger than"),
        ("{{ lipsum(1000) }}", "undefined"),
        ("{{ cycler }}", "undefined"),
        ("{{ params.name | center(1000000000) }}", "No filter named 'center'"),
        ("{{ params.missing }}", "has no attribute 'missing'"),
        ("x {{ steps.b.outputs.y }}", "has no attribute 'b'"),
        ("{{ params.n + }}", "invalid template"),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_hostile_or_broken_templates_fail_clearly(template: str, message: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render(template, CONTEXT)
    assert message in str(info.value)
    assert repr(template)[:20] in str(info.value) or template[:20] in str(info.value)


def test_references_report_roots_paths_and_defaults() -> None:
    found = {
        (str(ref), ref.defaulted)
        for ref in references(
            {
                "a": "{{ params.models[0].id }} {{ steps.a.outputs.ids | default([]) }}",
                "b": ["{{ execution.error_message }}", "{{ item.x }}"],
            }
        )
    }
    assert found == {
        ("params.models.0.id", False),
        ("steps.a.outputs.ids", True),
        ("execution.error_message", False),
        ("item.x", False),
    }


def test_globals_are_not_references() -> None:
    assert [str(r) for r in references("{{ none }} {{ true }} {{ range(3) }}")] == []
