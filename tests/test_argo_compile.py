"""The Argo compiler: every spec renders to schema-valid, lint-clean documents of the right shape.

Real specs, real Hera, the pinned official schema and the semantic lint; no mocks.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from foundryflow.compile.argo import (
    ENTRYPOINT,
    EXIT_HANDLER,
    FINISH,
    HEADER_PREFIX,
    ROLLBACK,
    START,
    ArgoCompileError,
    argo_name,
    build_cron_workflow,
    build_workflow_template,
    fanout_name,
    label_value,
    render_all,
    render_documents,
    render_yaml,
)
from foundryflow.compile.argo_lint import ArgoSchema, check_documents, load_schema
from foundryflow.config import REPO_ROOT, Settings
from foundryflow.spec.loader import PipelineCatalog, parse_pipeline
from foundryflow.spec.model import RESERVED_PREFIX, STEP_ID_PATTERN, Pipeline

SPEC_FOLDERS = [REPO_ROOT / "pipelines", REPO_ROOT / "tests" / "pipelines"]
ARGO_DIR = REPO_ROOT / "argo"
RENDER_HINT = "run `foundryflow argo render --out argo` and commit the result"

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def pipelines() -> dict[str, Pipeline]:
    return PipelineCatalog(SPEC_FOLDERS, require_actions=False).load()


@pytest.fixture(scope="module")
def schema() -> ArgoSchema:
    return load_schema()


def make_pipeline(**overrides: Any) -> Pipeline:
    """A fully validated spec (graph and actions too), as the loader would accept it."""
    raw: dict[str, Any] = {
        "name": "t-built",
        "steps": [
            {"id": "one", "action": "test.echo", "params": {"value": 1}},
            {"id": "two_b", "action": "test.echo", "depends_on": ["one"]},
        ],
    }
    raw.update(overrides)
    return parse_pipeline(raw, "test")


def template_doc(pipeline: Pipeline) -> Doc:
    return render_documents(pipeline)[0]


def templates(doc: Doc) -> dict[str, Doc]:
    spec = doc["spec"]
    return {t["name"]: t for t in spec["templates"]}


def tasks(doc: Doc, dag: str) -> dict[str, Doc]:
    return {t["name"]: t for t in templates(doc)[dag]["dag"]["tasks"]}


def arguments(doc: Doc) -> dict[str, Doc]:
    return {p["name"]: p for p in doc["spec"]["arguments"]["parameters"]}


def containers(doc: Doc) -> Iterator[tuple[str, Doc]]:
    for name, template in templates(doc).items():
        if "container" in template:
            yield name, template["container"]


def assert_valid(docs: list[Doc], schema: ArgoSchema) -> None:
    problems = check_documents(docs, schema)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- every spec


@pytest.mark.parametrize(
    "name",
    sorted(PipelineCatalog(SPEC_FOLDERS, require_actions=False).names()),
)
def test_every_spec_renders_valid_documents(
    name: str, pipelines: dict[str, Pipeline], schema: ArgoSchema
) -> None:
    pipeline = pipelines[name]
    docs = render_documents(pipeline)
    assert [doc["kind"] for doc in docs] == (
        ["WorkflowTemplate", "CronWorkflow"] if pipeline.settings.schedule else ["WorkflowTemplate"]
    )
    assert_valid(docs, schema)
    text = render_yaml(pipeline)
    assert text.startswith(f"{HEADER_PREFIX}pipelines/{name}.yaml")
    assert list(yaml.safe_load_all(text)) == docs
    # Same spec, same bytes: nothing machine- or run-dependent leaks into the output.
    assert render_yaml(pipeline) == text


def test_every_container_runs_the_cli_with_secrets_and_limits(
    pipelines: dict[str, Pipeline],
) -> None:
    settings = Settings.model_construct()
    for pipeline in pipelines.values():
        doc = template_doc(pipeline)
        assert doc["spec"]["serviceAccountName"] == settings.argo_service_account
        assert doc["metadata"]["namespace"] == settings.argo_namespace
        for name, container in containers(doc):
            assert container["image"] == settings.argo_image, name
            assert container["command"] == ["foundryflow"], name
            assert container["imagePullPolicy"] == "IfNotPresent", name
            assert container["resources"] == {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            }, name
            env = {e["name"]: e for e in container["env"]}
            for var, key in (
                ("FOUNDRYFLOW_DATABASE_URL", "database-url"),
                ("FOUNDRYFLOW_REDIS_URL", "redis-url"),
            ):
                assert env[var] == {
                    "name": var,
                    "valueFrom": {"secretKeyRef": {"name": "foundryflow-runtime", "key": key}},
                }, name
            # The only literal env values are the parameter references of ff-start.
            for var, entry in env.items():
                if "value" in entry:
                    assert name == START and var.startswith("FOUNDRYFLOW_PARAM_"), (name, var)
        assert all("script" not in t for t in doc["spec"]["templates"])


def test_rendering_ignores_the_environment(
    pipelines: dict[str, Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = pipelines["t-linear"]
    before = render_yaml(pipeline)
    monkeypatch.setenv("FOUNDRYFLOW_ARGO_IMAGE", "evil.example/other:latest")
    monkeypatch.setenv("FOUNDRYFLOW_ARGO_NAMESPACE", "elsewhere")
    assert render_yaml(pipeline) == before
    custom = Settings(argo_image="registry.local/ff:dev", argo_namespace="ns")
    doc = render_documents(pipeline, custom)[0]
    assert doc["metadata"]["namespace"] == "ns"
    assert {c["image"] for _, c in containers(doc)} == {"registry.local/ff:dev"}


# --------------------------------------------------------------------------- checked-in files


def test_checked_in_argo_files_match_a_fresh_render() -> None:
    repo_pipelines = PipelineCatalog([REPO_ROOT / "pipelines"], require_actions=False).load()
    expected = {f"{name}.yaml": render_yaml(p) for name, p in repo_pipelines.items()}
    found = {path.name: path.read_text(encoding="utf-8") for path in ARGO_DIR.glob("*.yaml")}
    missing = sorted(set(expected) - set(found))
    stale = sorted(
        name for name in set(found) - set(expected) if found[name].startswith(HEADER_PREFIX)
    )
    outdated = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
    assert not (missing or stale or outdated), (
        f"argo/ is out of date (missing {missing}, stale {stale}, outdated {outdated}): "
        + RENDER_HINT
    )


def test_render_all_writes_each_pipeline_and_removes_only_its_own_stale_files(
    pipelines: dict[str, Pipeline], tmp_path: Path
) -> None:
    out = tmp_path / "argo"
    out.mkdir()
    hand_written = out / "hand-written.yaml"
    hand_written.write_text("apiVersion: v1\nkind: ConfigMap\n", encoding="utf-8")
    stale = out / "old-pipeline.yaml"
    stale.write_text(f"{HEADER_PREFIX}pipelines/old-pipeline.yaml\nkind: WorkflowTemplate\n")
    chosen = [pipelines["t-linear"], pipelines["t-fanout"]]

    written = render_all(chosen, out)

    assert written == [out / "t-fanout.yaml", out / "t-linear.yaml"]
    assert sorted(p.name for p in out.iterdir()) == [
        "hand-written.yaml",
        "t-fanout.yaml",
        "t-linear.yaml",
    ]
    assert (out / "t-linear.yaml").read_text(encoding="utf-8") == render_yaml(chosen[0])
    # A second run with fewer pipelines removes the generated file it no longer produces.
    assert render_all(chosen[:1], out) == [out / "t-linear.yaml"]
    assert sorted(p.name for p in out.iterdir()) == ["hand-written.yaml", "t-linear.yaml"]


# --------------------------------------------------------------------------- structure


def test_linear_arguments_and_dependencies(pipelines: dict[str, Pipeline]) -> None:
    doc = template_doc(pipelines["t-linear"])
    spec = doc["spec"]
    assert spec["entrypoint"] == ENTRYPOINT
    assert spec["onExit"] == EXIT_HANDLER
    assert doc["metadata"]["labels"] == {
        "app.kubernetes.io/name": "foundryflow",
        "app.kubernetes.io/part-of": "foundryflow",
        "foundryflow.io/pipeline": "t-linear",
        "foundryflow.io/version": "2",
    }
    assert doc["metadata"]["annotations"]["workflows.argoproj.io/description"].startswith(
        "Linear pipeline"
    )

    args = arguments(doc)
    assert args["a"] == {"name": "a"}  # required, no default: Argo refuses to submit without it
    assert args["b"] == {"name": "b", "value": "5"}
    assert args["mode"] == {"name": "mode", "value": "fast", "enum": ["fast", "slow"]}
    assert json.loads(args["tags"]["value"]) == ["x", "y"]

    main = tasks(doc, ENTRYPOINT)
    assert list(main) == [START, "first", "second", "only-slow", "last"]
    assert "dependencies" not in main[START]
    assert main["first"]["dependencies"] == [START]
    assert main["second"]["dependencies"] == ["first"]
    assert main["only-slow"]["dependencies"] == ["second"]
    assert main["last"]["dependencies"] == ["only-slow"]
    assert all("continueOn" not in task for task in main.values())
    assert templates(doc)["only-slow"]["container"]["args"] == [
        "step",
        "run",
        "--execution-id",
        "{{workflow.uid}}",
        "--step",
        "only_slow",
    ]

    start = templates(doc)[START]["container"]
    assert start["args"] == [
        "executions",
        "start",
        "--pipeline",
        "t-linear",
        "--engine",
        "argo",
        "--run-id",
        "{{workflow.name}}",
        "--execution-id",
        "{{workflow.uid}}",
    ]
    env = {e["name"]: e.get("value") for e in start["env"]}
    for name in ("a", "b", "mode", "tags"):
        assert env[f"FOUNDRYFLOW_PARAM_{name.upper()}"] == f"{{{{workflow.parameters.{name}}}}}"

    exit_tasks = tasks(doc, EXIT_HANDLER)
    assert list(exit_tasks) == [FINISH]
    assert "dependencies" not in exit_tasks[FINISH]
    assert templates(doc)[FINISH]["container"]["args"] == [
        "executions",
        "finish",
        "--execution-id",
        "{{workflow.uid}}",
        "--engine-status",
        "{{workflow.status}}",
    ]


def test_fanout_maps_the_step_over_the_fanout_result(pipelines: dict[str, Pipeline]) -> None:
    doc = template_doc(pipelines["t-fanout"])
    main = tasks(doc, ENTRYPOINT)
    fan = fanout_name("square")
    assert list(main) == [START, fan, "square", "gather"]
    assert main[fan]["template"] == fan
    assert main[fan]["dependencies"] == [START]
    assert templates(doc)[fan]["container"]["args"] == [
        "step",
        "fanout",
        "--execution-id",
        "{{workflow.uid}}",
        "--step",
        "square",
    ]
    square = main["square"]
    assert square["dependencies"] == [fan]
    assert square["withParam"] == f"{{{{tasks.{fan}.outputs.result}}}}"
    assert square["arguments"]["parameters"] == [{"name": "index", "value": "{{item}}"}]
    step_template = templates(doc)["square"]
    assert step_template["inputs"]["parameters"] == [{"name": "index"}]
    assert step_template["container"]["args"][-2:] == ["--index", "{{inputs.parameters.index}}"]
    assert main["gather"]["dependencies"] == ["square"]
    assert "inputs" not in templates(doc)["gather"]


def test_rollback_runs_in_the_exit_handler(pipelines: dict[str, Pipeline]) -> None:
    doc = template_doc(pipelines["t-rollback"])
    main = tasks(doc, ENTRYPOINT)
    assert list(main) == [START, "make-a", "make-b", "explode"]  # cleanup is a finally step
    assert all("continueOn" not in task for task in main.values())

    exit_tasks = tasks(doc, EXIT_HANDLER)
    assert list(exit_tasks) == [ROLLBACK, "cleanup", FINISH]
    assert "dependencies" not in exit_tasks[ROLLBACK]
    assert exit_tasks["cleanup"]["dependencies"] == [ROLLBACK]
    assert exit_tasks[FINISH]["dependencies"] == [ROLLBACK, "cleanup"]
    # ff-finish must run whatever rollback and the finally steps did.
    for name in (ROLLBACK, "cleanup"):
        assert exit_tasks[name]["continueOn"] == {"failed": True, "error": True}
    assert templates(doc)[ROLLBACK]["container"]["args"] == [
        "executions",
        "rollback",
        "--execution-id",
        "{{workflow.uid}}",
        "--engine-status",
        "{{workflow.status}}",
    ]
    assert arguments(doc)["fail"] == {"name": "fail", "value": "true"}
    assert arguments(doc)["callback_topics"] == {"name": "callback_topics", "value": ""}


def test_finally_steps_depend_on_each_other_and_skip_regular_dependencies(
    schema: ArgoSchema,
) -> None:
    pipeline = make_pipeline(
        steps=[
            {"id": "work", "action": "test.echo"},
            {
                "id": "notify",
                "action": "test.echo",
                "depends_on": ["work"],
                "condition": "{{ execution.status == 'FAILED' }}",
            },
            {
                "id": "report",
                "action": "test.echo",
                "depends_on": ["notify", "work"],
                "condition": "{{ execution.status != 'RUNNING' }}",
            },
        ]
    )
    doc = template_doc(pipeline)
    assert_valid([doc], schema)
    assert list(tasks(doc, ENTRYPOINT)) == [START, "work"]
    exit_tasks = tasks(doc, EXIT_HANDLER)
    assert list(exit_tasks) == ["notify", "report", FINISH]
    assert "dependencies" not in exit_tasks["notify"]  # no rollback: nothing to wait for
    assert exit_tasks["report"]["dependencies"] == ["notify"]
    assert exit_tasks[FINISH]["dependencies"] == ["notify", "report"]


@pytest.mark.parametrize("on_failure", ["fail", "continue", "rollback"])
def test_continue_on_only_for_on_failure_continue(on_failure: str, schema: ArgoSchema) -> None:
    pipeline = make_pipeline(
        settings={"on_failure": on_failure},
        steps=[
            {"id": "one", "action": "test.echo"},
            {"id": "many", "action": "test.echo", "depends_on": ["one"], "foreach": [1, 2, 3]},
            {"id": "after", "action": "test.echo", "depends_on": ["many"]},
        ],
    )
    doc = template_doc(pipeline)
    assert_valid([doc], schema)
    main = tasks(doc, ENTRYPOINT)
    assert "continueOn" not in main[START]
    step_tasks = [name for name in main if name != START]
    assert step_tasks == ["one", fanout_name("many"), "many", "after"]
    for name in step_tasks:
        if on_failure == "continue":
            assert main[name]["continueOn"] == {"failed": True}, name
        else:
            assert "continueOn" not in main[name], name
    assert (ROLLBACK in tasks(doc, EXIT_HANDLER)) == (on_failure == "rollback")


def test_timeouts_become_active_deadlines(schema: ArgoSchema) -> None:
    pipeline = make_pipeline(
        settings={"timeout_seconds": 3600},
        steps=[
            {"id": "slow", "action": "test.echo", "timeout_seconds": 90},
            {"id": "fast", "action": "test.echo"},
        ],
    )
    doc = template_doc(pipeline)
    assert_valid([doc], schema)
    assert doc["spec"]["activeDeadlineSeconds"] == 3600
    assert templates(doc)["slow"]["activeDeadlineSeconds"] == 90
    assert "activeDeadlineSeconds" not in templates(doc)["fast"]


def test_optional_enum_without_default_accepts_the_empty_value() -> None:
    pipeline = make_pipeline(
        parameters=[
            {"name": "level", "enum": ["low", "high"]},
            {"name": "count", "type": "integer", "enum": [1, 2], "required": True},
        ]
    )
    args = arguments(template_doc(pipeline))
    # Argo requires a value to be one of the enum; "" means "not given" to the runtime.
    assert args["level"] == {"name": "level", "value": "", "enum": ["low", "high", ""]}
    assert args["count"] == {"name": "count", "enum": ["1", "2"]}


def test_version_is_sanitised_for_a_label_value() -> None:
    assert label_value("1.0") == "1.0"
    assert label_value("2024.1+build/7 rc") == "2024.1-build-7-rc"
    assert label_value("_" + "v" * 80 + "!") == "v" * 62
    doc = template_doc(make_pipeline(version="release/2.0 (beta)"))
    assert doc["metadata"]["labels"]["foundryflow.io/version"] == "release-2.0-beta"


# --------------------------------------------------------------------------- cron


def test_scheduled_pipeline_gets_a_cron_workflow_referencing_the_template(
    schema: ArgoSchema,
) -> None:
    pipeline = make_pipeline(
        name="t-nightly",
        description="Nightly cleanup.",
        settings={"schedule": "30 2 * * *"},
        parameters=[
            {"name": "days", "type": "integer", "default": 7},
            {"name": "mode", "enum": ["dry", "real"], "default": "dry"},
            {"name": "note"},
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Hera's deprecated ``schedule`` shim would warn
        docs = render_documents(pipeline)
    assert_valid(docs, schema)
    template, cron = docs
    assert template["kind"] == "WorkflowTemplate"
    assert cron["kind"] == "CronWorkflow"
    assert cron["metadata"]["name"] == "t-nightly"
    assert cron["metadata"]["labels"]["foundryflow.io/pipeline"] == "t-nightly"
    spec = cron["spec"]
    assert spec["schedules"] == ["30 2 * * *"]
    assert "schedule" not in spec
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 300
    workflow_spec = spec["workflowSpec"]
    assert workflow_spec["workflowTemplateRef"] == {"name": "t-nightly"}
    assert "templates" not in workflow_spec
    assert "entrypoint" not in workflow_spec
    assert workflow_spec["arguments"]["parameters"] == [
        {"name": "days", "value": "7"},
        {"name": "mode", "value": "dry"},
    ]
    rendered = render_yaml(pipeline)
    assert rendered.count("\n---\n") == 1
    assert list(yaml.safe_load_all(rendered)) == docs


def test_unscheduled_pipeline_has_no_cron(pipelines: dict[str, Pipeline]) -> None:
    for pipeline in pipelines.values():
        if pipeline.settings.schedule is None:
            assert build_cron_workflow(pipeline) is None


def test_scheduled_pipeline_needs_defaults_for_required_parameters() -> None:
    pipeline = make_pipeline(
        settings={"schedule": "@daily"}, parameters=[{"name": "target", "required": True}]
    )
    with pytest.raises(ArgoCompileError, match=r"scheduled .* target have no default"):
        build_cron_workflow(pipeline)


# --------------------------------------------------------------------------- injection


NASTY = "a'''b\"c $(rm -rf /) `id` {{workflow.name}} {{ unbalanced\nline two\n\ttab; --step x\n"


def _all_command_lines(doc: Doc) -> list[str]:
    return [
        part
        for _, container in containers(doc)
        for part in [*container.get("command", []), *container.get("args", [])]
    ]


@pytest.mark.parametrize("type_", ["string", "json"])
def test_parameter_values_never_reach_a_command_line(type_: str, schema: ArgoSchema) -> None:
    default: Any = NASTY if type_ == "string" else {"cmd": NASTY, "list": [NASTY]}
    pipeline = make_pipeline(
        parameters=[
            {"name": "payload", "type": type_, "default": default, "description": NASTY},
            {"name": "choice", "enum": [NASTY, "plain"], "default": NASTY},
        ]
    )
    text = render_yaml(pipeline)
    docs = list(yaml.safe_load_all(text))
    assert docs == render_documents(pipeline)
    doc = docs[0]
    assert_valid(docs, schema)

    args = arguments(doc)
    expected = NASTY if type_ == "string" else json.dumps(default)
    assert args["payload"]["value"] == expected
    assert args["payload"]["description"] == NASTY
    assert args["choice"]["value"] == NASTY
    assert args["choice"]["enum"] == [NASTY, "plain"]

    for part in _all_command_lines(doc):
        for fragment in ("rm -rf", "'''", '"c', "`id`", "unbalanced", "line two"):
            assert fragment not in part, part
    start_env = {e["name"]: e.get("value") for e in templates(doc)[START]["container"]["env"]}
    assert start_env["FOUNDRYFLOW_PARAM_PAYLOAD"] == "{{workflow.parameters.payload}}"
    # The payload text appears in exactly the argument value, description and enum.
    assert json.dumps(doc).count("rm -rf") == (4 if type_ == "string" else 5)


# --------------------------------------------------------------------------- names


def test_argo_name_is_injective_on_step_ids() -> None:
    """Step ids cannot contain '-' (so '_' -> '-' loses nothing) nor start with 'ff_'.

    Hence two steps never share an Argo name, and no step can take a name the compiler adds
    (all of which start with 'ff-'): the only guard left is in the compiler for safety.
    """
    assert not re.fullmatch(STEP_ID_PATTERN, "a-b")
    assert RESERVED_PREFIX == "ff_"
    ids = ["a_b", "a__b", "ab", "a_b_", "a_b_c", "a__b_c"]
    assert len({argo_name(step_id) for step_id in ids}) == len(ids)
    assert argo_name("a__b") == "a--b"
    with pytest.raises(ValueError, match="reserved"):
        Pipeline.model_validate({"name": "x", "steps": [{"id": "ff_start", "action": "a"}]})
    with pytest.raises(ValueError, match="pattern"):
        Pipeline.model_validate({"name": "x", "steps": [{"id": "a-b", "action": "a"}]})


def test_steps_named_like_compiler_parts_do_not_clash(schema: ArgoSchema) -> None:
    pipeline = make_pipeline(
        steps=[
            {"id": "main", "action": "test.echo"},
            {"id": "square", "action": "test.echo", "foreach": [1], "depends_on": ["main"]},
            {"id": "square_fanout", "action": "test.echo", "depends_on": ["square"]},
            {"id": "fanout_square", "action": "test.echo"},
            {"id": "exit", "action": "test.echo"},
        ]
    )
    doc = template_doc(pipeline)
    assert_valid([doc], schema)
    assert list(tasks(doc, ENTRYPOINT)) == [
        START,
        "main",
        fanout_name("square"),
        "square",
        "square-fanout",
        "fanout-square",
        "exit",
    ]


def test_parameters_clashing_as_env_vars_are_refused() -> None:
    pipeline = make_pipeline(parameters=[{"name": "region"}, {"name": "REGION"}])
    with pytest.raises(ArgoCompileError, match="FOUNDRYFLOW_PARAM_REGION"):
        build_workflow_template(pipeline)
