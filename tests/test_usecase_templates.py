"""Use-case templates and the DAG builder (seed 004): what is refused before anything runs,
and the shape of the pipelines built from the shipped templates. No database needed."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from foundryflow.compile.argo import PIPELINE_SPEC_ENV, build_workflow, decode_spec
from foundryflow.compile.argo_lint import check_documents, load_schema
from foundryflow.usecase.builder import DeploymentRequest, build_pipeline, build_spec
from foundryflow.usecase.catalog import load_catalog
from foundryflow.usecase.template import (
    TEMPLATES_DIR,
    UseCaseTemplateError,
    find_template,
    parse_template,
    rewrite_parameters,
    template_files,
)

CATALOG = load_catalog()
AGENT_RAG = yaml.safe_load((TEMPLATES_DIR / "agent-rag.yaml").read_text())


def variant(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(AGENT_RAG)
    raw.update(changes)
    return raw


def component(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in raw["components"] if c["name"] == name)


def problems_of(raw: Any) -> str:
    with pytest.raises(UseCaseTemplateError) as caught:
        parse_template(raw, "t.yaml")
    return "; ".join(caught.value.problems)


def request(**fields: Any) -> DeploymentRequest:
    return DeploymentRequest.model_validate({"name": "my-agent", "cluster": "c1", **fields})


# --------------------------------------------------------------------------- shipped templates
def test_every_shipped_template_builds_and_its_choices_are_in_the_catalog() -> None:
    names = set()
    for path in template_files():
        template = find_template(str(path))
        build_pipeline(template, CATALOG)
        names.add(template.name)
    assert {"agent-rag", "rag-memory"} <= names


def test_agent_rag_deploys_in_its_deployment_order() -> None:
    pipeline = build_pipeline(find_template("agent-rag"), CATALOG)
    assert pipeline.name == "usecase-agent-rag"
    assert [(s.id, s.depends_on) for s in pipeline.steps] == [
        ("cluster_health", []),
        ("vector_db", ["cluster_health"]),
        ("llm", ["cluster_health", "vector_db"]),
        ("agent_runtime", ["cluster_health", "llm"]),
        ("notify_complete", ["vector_db", "llm", "agent_runtime"]),
    ]
    assert pipeline.settings.on_failure == "rollback"
    values = pipeline.step("agent_runtime").params["values"]
    assert values["llmEndpoint"] == "{{ steps.llm.outputs.endpoint_url }}"
    assert values["chunkSize"] == "{{ params.chunk_size }}"  # parameters.x -> params.x


def test_rag_memory_deploys_independent_components_in_parallel() -> None:
    pipeline = build_pipeline(find_template("rag-memory"), CATALOG)
    depends = {s.id: s.depends_on for s in pipeline.steps}
    for name in ("embedder", "reranker", "vector_db", "memory_store", "llm"):
        assert depends[name] == ["cluster_health"]
    assert depends["rag_api"] == [
        "cluster_health",
        "embedder",
        "llm",
        "memory_store",
        "reranker",
        "vector_db",
    ]
    assert depends["ingest_worker"] == ["cluster_health", "embedder", "vector_db"]
    assert pipeline.step("ingest_worker").condition == "{{ params.ingest_worker }}"


def test_the_form_has_a_drop_down_per_component_and_the_parameters_bounds() -> None:
    pipeline = build_pipeline(find_template("agent-rag"), CATALOG)
    llm = pipeline.parameter("llm")
    assert (llm.enum, llm.default, llm.required) == (
        ["llama-3-8b", "llama-3-70b", "mistral-7b"],
        "llama-3-8b",
        True,
    )
    chunk = pipeline.parameter("chunk_size")
    assert (chunk.type, chunk.default, chunk.minimum, chunk.maximum) == ("integer", 512, 128, 2048)
    assert pipeline.parameter("deployment_name").required
    assert pipeline.parameter("cluster").required


# --------------------------------------------------------------------------- template errors
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: component(r, "agent_runtime").pop("chart"), "'chart' is required"),
        (
            lambda r: component(r, "llm").update(chart={"ref": "charts/agent-runtime"}),
            "'chart' is only for type 'helm'",
        ),
        (lambda r: component(r, "llm").update(type="gpu"), "components[llm].type"),
        (lambda r: component(r, "llm").update(name="vector_db"), "declared twice"),
        (lambda r: component(r, "llm").update(name="cluster"), "reserved"),
        (lambda r: component(r, "llm").update(name="Bad-Name"), "components[Bad-Name].name"),
        (lambda r: component(r, "llm").update(default_component="gpt-4"), "not one of"),
        (lambda r: component(r, "llm").update(compatible_components=[]), "needs compatible"),
        (lambda r: r.update(deployment_order=["vector_db", "llm"]), "missing ['agent_runtime']"),
        (
            lambda r: r.update(deployment_order=["vector_db", "agent_runtime", "llm"]),
            "reads the outputs of 'llm', which is not upstream",
        ),
        (
            lambda r: component(r, "agent_runtime")["chart"]["values"].update(
                x="{{ steps.ghost.outputs.endpoint_url }}"
            ),
            "no component 'ghost'",
        ),
        (
            lambda r: component(r, "agent_runtime")["chart"]["values"].update(
                x="{{ steps.llm.outputs.password }}"
            ),
            "components report",
        ),
        (
            lambda r: component(r, "agent_runtime")["chart"]["values"].update(
                x="{{ parameters.nope }}"
            ),
            "no such parameter",
        ),
        (
            lambda r: component(r, "agent_runtime")["chart"]["values"].update(
                x="{{ agent_runtime.outputs }}"
            ),
            "values may read only",
        ),
        (
            lambda r: r["parameters"].update(llm={"type": "integer", "default": 1}),
            "clashes with a component",
        ),
        (
            lambda r: r["parameters"]["chunk_size"].update(default=64),
            "below the minimum",
        ),
        (
            lambda r: r["parameters"]["chunk_size"].update(default="big"),
            "is not of type integer",
        ),
        (
            lambda r: r["parameters"]["chunk_size"].update(min=5000),
            "min 5000 is greater than max",
        ),
        (lambda r: r.update(name="Agent RAG"), "name"),
        (lambda r: r.update(unknown=1), "unknown: Extra inputs are not permitted"),
    ],
)
def test_template_problems_are_reported_with_where(change: Any, message: str) -> None:
    raw = copy.deepcopy(AGENT_RAG)
    change(raw)
    assert message in problems_of(raw)


@pytest.mark.parametrize(
    "ref",
    [
        "charts/../../etc",
        "charts/agent-runtime; rm -rf /",
        "https://user:pw@charts.example.com/agent",
        "http://charts.example.com/agent",
        "oci:/registry.example.com/agent",
        " charts/agent-runtime",
        "/charts/agent-runtime",
        "charts/agent%2e%2e",
    ],
)
def test_hostile_chart_references_are_refused(ref: str) -> None:
    raw = copy.deepcopy(AGENT_RAG)
    component(raw, "agent_runtime")["chart"]["ref"] = ref
    assert "components[agent_runtime].chart" in problems_of(raw)


def test_blocked_values_are_refused_at_any_depth_with_their_path() -> None:
    raw = copy.deepcopy(AGENT_RAG)
    component(raw, "agent_runtime")["chart"]["values"]["spec"] = {
        "containers": [{"securityContext": {"privileged": True}}],
        "hostNetwork": True,
    }
    found = problems_of(raw)
    assert "spec.containers[0].securityContext.privileged" in found
    assert "spec.hostNetwork" in found


def test_dependency_cycles_are_refused() -> None:
    raw = copy.deepcopy(AGENT_RAG)
    del raw["deployment_order"]
    raw["components"].append(
        {
            "name": "tools",
            "type": "helm",
            "chart": {
                "ref": "charts/agent-runtime",
                "values": {"llmEndpoint": "{{ steps.agent_runtime.outputs.endpoint_url }}"},
            },
        }
    )
    component(raw, "agent_runtime")["chart"]["values"]["memoryEndpoint"] = (
        "{{ steps.tools.outputs.endpoint_url }}"
    )
    assert "cycle: agent_runtime -> tools -> agent_runtime" in problems_of(raw)


@pytest.mark.parametrize(
    "injected",
    [
        "{{ ''.__class__.__mro__ }}",
        "{% for x in range(10) %}x{% endfor %}",
        "{{ parameters.chunk_size.__class__ }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_template_injection_in_values_is_refused(injected: str) -> None:
    raw = copy.deepcopy(AGENT_RAG)
    component(raw, "agent_runtime")["chart"]["values"]["logLevel"] = injected
    problems_of(raw)


def test_a_required_component_cannot_read_an_optional_one() -> None:
    raw = copy.deepcopy(AGENT_RAG)
    component(raw, "vector_db")["required"] = False
    assert "'vector_db' is optional" in problems_of(raw)


def test_rewrite_touches_only_the_parameters_variable() -> None:
    assert rewrite_parameters(
        {"a": ["{{ parameters.x + 1 }}", "{{ 'parameters.x' }}", "{{ steps.a.parameters }}"]}
    ) == {"a": ["{{ params.x + 1 }}", "{{ 'parameters.x' }}", "{{ steps.a.parameters }}"]}
    assert rewrite_parameters("no template: parameters.x") == "no template: parameters.x"


# --------------------------------------------------------------------------- requests
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"selections": {"llm": "gpt-4"}}, "selections.llm: 'gpt-4' is not one of"),
        ({"selections": {"ghost": "x"}}, "'ghost' is not a component"),
        ({"selections": {"agent_runtime": False}}, "required, cannot be left out"),
        ({"selections": {"agent_runtime": "yes"}}, "true or false"),
        ({"parameters": {"chunk_size": 4096}}, "above the maximum 2048"),
        ({"parameters": {"chunk_size": "512"}}, "is not of type integer"),
        ({"parameters": {"chunk_size": True}}, "is not of type integer"),
        ({"parameters": {"temperature": 1}}, "unknown parameter 'temperature'"),
    ],
)
def test_bad_requests_are_refused_before_anything_runs(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(UseCaseTemplateError, match=re.escape(message)):
        build_spec(find_template("agent-rag"), CATALOG, request(**fields))


def test_a_required_component_without_default_must_be_selected() -> None:
    raw = copy.deepcopy(AGENT_RAG)
    del component(raw, "llm")["default_component"]
    template = parse_template(raw, "t.yaml")
    with pytest.raises(UseCaseTemplateError, match=r"selections\.llm: required"):
        build_spec(template, CATALOG, request())


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "My_Agent"},
        {"name": "a" * 31},
        {"name": "-agent"},
        {"cluster": "c1; drop table clusters"},
        {"callback_topics": ["t"] * 11},
        {"extra": 1},
    ],
)
def test_malformed_requests_fail_validation(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        request(**fields)


def test_a_request_leaves_unselected_optional_components_out() -> None:
    template = find_template("rag-memory")
    without = build_pipeline(template, CATALOG, request(parameters={"api_replicas": 3}))
    assert "ingest_worker" not in [s.id for s in without.steps]
    assert "ingest_worker" not in without.step("notify_complete").depends_on
    assert without.parameter("api_replicas").default == 3
    assert without.parameter("deployment_name").default == "my-agent"
    with_worker = build_pipeline(
        template, CATALOG, request(selections={"ingest_worker": True, "llm": "mistral-7b"})
    )
    assert with_worker.step("ingest_worker").condition == "{{ params.ingest_worker }}"
    assert with_worker.parameter("llm").default == "mistral-7b"


def test_render_gives_a_schema_valid_workflow_carrying_its_spec() -> None:
    pipeline = build_pipeline(find_template("agent-rag"), CATALOG, request())
    doc = build_workflow(pipeline, generate_name="usecase-agent-rag-my-agent")
    assert doc["kind"] == "Workflow"
    assert doc["metadata"]["generateName"] == "usecase-agent-rag-my-agent-"
    assert "name" not in doc["metadata"]
    assert check_documents([doc], load_schema()) == []
    start = next(t for t in doc["spec"]["templates"] if t["name"] == "ff-start")
    carried = next(e["value"] for e in start["container"]["env"] if e["name"] == PIPELINE_SPEC_ENV)
    assert "{{" not in carried  # Argo must not read the spec's templates as its own
    assert decode_spec(carried)["name"] == "usecase-agent-rag"
    arguments = {p["name"]: p.get("value") for p in doc["spec"]["arguments"]["parameters"]}
    assert arguments["deployment_name"] == "my-agent"
    assert arguments["llm"] == "llama-3-8b"


def test_a_broken_template_is_reported_and_the_others_still_build(tmp_path: Any) -> None:
    from foundryflow.usecase.pipelines import scan

    (tmp_path / "agent-rag.yaml").write_text(yaml.safe_dump(AGENT_RAG))
    broken = copy.deepcopy(AGENT_RAG) | {"name": "broken"}
    component(broken, "agent_runtime")["chart"]["ref"] = "charts/../../etc"
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    pipelines, problems = scan(tmp_path)
    assert list(pipelines) == ["usecase-agent-rag"]
    assert len(problems) == 1 and "broken.yaml" in problems[0] and "chart" in problems[0]
