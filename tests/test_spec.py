"""Loading and validating pipeline specs: the seeds' format, and every kind of problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from foundryflow.spec.loader import PipelineCatalog, load_pipeline, parse_pipeline
from foundryflow.spec.validate import SpecError, find_cycle

REPO = Path(__file__).resolve().parent.parent
GUARDRAIL = [
    "guardrail-model-onboarding",
    "guardrail-cluster-recommendation",
    "guardrail-deployment",
]


def problems_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_pipeline(spec, "spec.yaml")
    return [str(p) for p in info.value.problems]


def base(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "p",
        "parameters": [{"name": "x", "type": "integer", "required": True}],
        "steps": [
            {"id": "a", "action": "test.add", "params": {"a": "{{ params.x }}"}},
            {
                "id": "b",
                "action": "test.add",
                "depends_on": ["a"],
                "params": {"a": "{{ steps.a.outputs.total }}"},
            },
        ],
    }
    spec.update(overrides)
    return spec


def test_guardrail_pipelines_load_with_their_meaning() -> None:
    catalog = PipelineCatalog([REPO / "pipelines"], require_actions=False)
    pipelines = catalog.load()
    assert set(GUARDRAIL) <= set(pipelines)

    onboarding = pipelines["guardrail-model-onboarding"]
    assert [s.id for s in onboarding.steps] == [
        "validate_credential",
        "onboard_models",
        "update_rules",
    ]
    assert onboarding.step("update_rules").depends_on == ["onboard_models"]
    assert onboarding.parameter("models_to_onboard").type == "json"
    assert onboarding.parameter("callback_topics").required is False
    assert onboarding.outputs["all_succeeded"] == "{{ steps.update_rules.outputs.success }}"

    recommendation = pipelines["guardrail-cluster-recommendation"]
    assert recommendation.parameter("hardware_mode").enum == ["dedicated", "shared"]

    deployment = pipelines["guardrail-deployment"]
    assert deployment.settings.on_failure == "rollback"
    assert [s.id for s in deployment.finally_steps] == ["rollback"]
    assert [s.id for s in deployment.regular_steps] == [
        "deploy_models",
        "create_profile",
        "create_deployment",
        "build_config",
        "sync_redis",
    ]
    assert deployment.version == "1.0"


def test_unimplemented_actions_are_reported_not_crashed(tmp_path: Path) -> None:
    spec = base()
    for step in spec["steps"]:
        step["action"] = "test.broken"  # registered by the test package, class missing
        step["params"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    messages = [str(p) for p in info.value.problems]
    assert len(messages) == 2  # one per step, all reported together
    for step in ("a", "b"):
        assert any(
            f"step {step!r}" in m
            and "action 'test.broken' is registered" in m
            and "not implemented" in m
            and "broken.yaml" in m
            for m in messages
        ), messages


def test_valid_spec_loads() -> None:
    pipeline = parse_pipeline(base(), "spec.yaml")
    assert pipeline.step("b").title == "b"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"steps": [{"id": "a", "action": "nope.nothing"}]},
            "unknown action 'nope.nothing' (known actions:",
        ),
        (
            {
                "steps": [
                    {"id": "a", "action": "test.add", "params": {"a": 1}, "depends_on": ["ghost"]}
                ]
            },
            "depends on unknown step 'ghost'",
        ),
        (
            {"steps": [{"id": "a", "action": "test.add", "params": {"a": "{{ params.y }}"}}]},
            "params.y refers to an undeclared parameter",
        ),
        (
            {
                "steps": [
                    {
                        "id": "a",
                        "action": "test.add",
                        "params": {"a": "{{ steps.zz.outputs.total }}"},
                    }
                ]
            },
            "refers to unknown step 'zz'",
        ),
        (
            {
                "steps": [
                    {"id": "a", "action": "test.add", "params": {"a": 1}},
                    {
                        "id": "b",
                        "action": "test.add",
                        "params": {"a": "{{ steps.a.outputs.total }}"},
                    },
                ]
            },
            "step 'b' does not depend on 'a'",
        ),
        (
            {
                "steps": [
                    {"id": "a", "action": "test.add", "params": {"a": 1}},
                    {
                        "id": "b",
                        "action": "test.add",
                        "depends_on": ["a"],
                        "params": {"a": "{{ steps.a.outputs.nope }}"},
                    },
                ]
            },
            "action 'test.add' has no output 'nope' (it returns: total)",
        ),
        (
            {"steps": [{"id": "a", "action": "test.add", "params": {"a": 1, "c": 2}}]},
            "action 'test.add' has no parameter 'c'",
        ),
        ({"steps": [{"id": "a", "action": "test.add"}]}, "action 'test.add' needs parameter 'a'"),
        (
            {"steps": [{"id": "a", "action": "test.echo", "params": {"value": "{{ item }}"}}]},
            "'item' is only defined inside a step with foreach",
        ),
        (
            {
                "steps": [
                    {
                        "id": "a",
                        "action": "test.echo",
                        "params": {"value": "{{ execution.status }}"},
                    }
                ]
            },
            "execution.status is only known in the closing phase",
        ),
        (
            {"steps": [{"id": "a", "action": "test.echo", "params": {"value": "{{ os.system }}"}}]},
            "unknown name 'os'",
        ),
        (
            {
                "steps": [
                    {
                        "id": "a",
                        "action": "test.echo",
                        "params": {"value": "{% for i in x %}{% endfor %}"},
                    }
                ]
            },
            "statements ({% ... %}) are not allowed",
        ),
        ({"steps": [{"id": "ff_start", "action": "test.echo"}]}, "reserved"),
        (
            {"steps": [{"id": "Bad-Id", "action": "test.echo"}]},
            "step 'Bad-Id': id: String should match",
        ),
        (
            {"steps": [{"id": "a", "action": "test.echo"}, {"id": "a", "action": "test.echo"}]},
            "duplicate step id",
        ),
        (
            {"parameters": [{"name": "x", "type": "integer", "default": "five"}]},
            "parameter 'x': default 'five': expected integer, got str",
        ),
        (
            {"parameters": [{"name": "m", "type": "string", "enum": ["a", 1]}]},
            "enum value 1 is not of type string",
        ),
        (
            {"parameters": [{"name": "m", "type": "string", "enum": ["a"], "default": "b"}]},
            "must be one of ['a']",
        ),
        (
            {"parameters": [{"name": "n", "type": "integer", "minimum": 5, "maximum": 1}]},
            "minimum 5 is greater than maximum 1",
        ),
        ({"parameters": [{"name": "n", "type": "float"}]}, "parameter 'n': type"),
        ({"settings": {"on_failure": "explode"}}, "settings.on_failure"),
        ({"settings": {"schedule": "every day"}}, "is not a 5-field cron expression"),
        ({"name": "Not A DNS Name"}, "name: String should match pattern"),
        ({"steps": []}, "steps: List should have at least 1 item"),
        ({"unknown_key": 1}, "unknown_key: Extra inputs are not permitted"),
    ],
)
def test_problem_is_reported(change: dict[str, Any], expected: str) -> None:
    messages = problems_of(base(**change))
    assert any(expected in m for m in messages), messages
    assert all(m.startswith("spec.yaml: ") for m in messages)


def test_cycle_is_named() -> None:
    spec = base(
        steps=[
            {"id": "a", "action": "test.add", "params": {"a": 1}, "depends_on": ["c"]},
            {"id": "b", "action": "test.add", "params": {"a": 1}, "depends_on": ["a"]},
            {"id": "c", "action": "test.add", "params": {"a": 1}, "depends_on": ["b"]},
        ]
    )
    messages = problems_of(spec)
    assert any("dependency cycle: a -> c -> b -> a" in m for m in messages), messages


def test_every_problem_is_reported_at_once() -> None:
    spec = base(
        steps=[
            {"id": "a", "action": "nope.x"},
            {
                "id": "b",
                "action": "test.add",
                "params": {"a": "{{ params.missing }}"},
                "depends_on": ["zz"],
            },
        ]
    )
    messages = problems_of(spec)
    assert len(messages) == 3
    assert any("step 'a'" in m and "unknown action" in m for m in messages)
    assert any("step 'b'" in m and "unknown step 'zz'" in m for m in messages)
    assert any("step 'b': params" in m and "params.missing" in m for m in messages)


def test_transitive_dependency_allows_reference() -> None:
    spec = base(
        steps=[
            {"id": "a", "action": "test.add", "params": {"a": 1}},
            {"id": "b", "action": "test.add", "params": {"a": 2}, "depends_on": ["a"]},
            {
                "id": "c",
                "action": "test.add",
                "params": {"a": "{{ steps.a.outputs.total }}"},
                "depends_on": ["b"],
            },
        ]
    )
    assert parse_pipeline(spec, "spec.yaml").step("c").depends_on == ["b"]


def test_finally_step_may_read_any_step_and_execution_status() -> None:
    spec = base(
        settings={"on_failure": "rollback"},
        steps=[
            {"id": "a", "action": "test.add", "params": {"a": 1}},
            {
                "id": "undo",
                "action": "test.echo",
                "condition": "{{ execution.status == 'FAILED' }}",
                "params": {
                    "value": "{{ steps.a.outputs.total | default(none) }} "
                    "{{ execution.error_message }}"
                },
            },
        ],
    )
    pipeline = parse_pipeline(spec, "spec.yaml")
    assert [s.id for s in pipeline.finally_steps] == ["undo"]


def test_regular_step_cannot_depend_on_finally_step() -> None:
    spec = base(
        steps=[
            {
                "id": "undo",
                "action": "test.echo",
                "condition": "{{ execution.status == 'FAILED' }}",
            },
            {"id": "a", "action": "test.echo", "depends_on": ["undo"]},
        ]
    )
    assert any("runs in the closing phase" in m for m in problems_of(spec))


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    assert str(info.value).startswith(f"{path}: cannot read spec")


def test_catalog_reports_duplicate_names_and_keeps_valid_ones(tmp_path: Path) -> None:
    spec = yaml.safe_dump(base())
    (tmp_path / "one.yaml").write_text(spec)
    (tmp_path / "two.yml").write_text(spec)
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump(base(name="bad", steps=[{"id": "a", "action": "x.y"}]))
    )
    catalog = PipelineCatalog([tmp_path])
    pipelines, problems = catalog.scan()
    assert list(pipelines) == ["p"]
    assert any("pipeline 'p' is also in" in str(p) for p in problems)
    assert any("bad.yaml" in str(p) and "unknown action 'x.y'" in str(p) for p in problems)
    assert [p.name for p in catalog.load_valid()] == ["p"]
    with pytest.raises(SpecError):
        catalog.load()
    assert catalog.get("p").name == "p"
    with pytest.raises(KeyError, match="no pipeline named 'zz'"):
        catalog.get("zz")


def test_find_cycle_handles_deep_graphs_without_recursion() -> None:
    graph = {f"s{i}": [f"s{i + 1}"] for i in range(5000)}
    graph["s5000"] = []
    assert find_cycle(graph) is None
    graph["s5000"] = ["s0"]
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 5002
