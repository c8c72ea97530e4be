"""The Argo schema check and the semantic lint accept what we render and reject each mistake."""

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from foundryflow.compile.argo_lint import (
    DEFAULT_SCHEMA_PATH,
    ArgoSchema,
    check_documents,
    lint,
    load_schema,
)

IMAGE = "ghcr.io/foundryflow/foundryflow:0.1.0"

ONBOARDING = f"""
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: model-onboarding
  labels:
    app.kubernetes.io/part-of: foundryflow
spec:
  entrypoint: main
  onExit: report
  arguments:
    parameters:
      - name: environment
        value: staging
        enum: [staging, production]
      - name: models
        value: '["llama-3-8b", "mistral-7b"]'
  templates:
    - name: main
      dag:
        tasks:
          - name: list-models
            template: run-step
            arguments:
              parameters:
                - {{name: step, value: list-models}}
                - {{name: payload, value: "{{{{workflow.parameters.models}}}}"}}
          - name: onboard
            template: run-step
            depends: list-models.Succeeded
            withParam: "{{{{tasks.list-models.outputs.parameters.result}}}}"
            arguments:
              parameters:
                - {{name: step, value: "onboard-{{{{item}}}}"}}
                - {{name: payload, value: "{{{{item}}}}"}}
          - name: deploy
            template: run-step
            depends: onboard && (list-models.Succeeded || !list-models.Failed)
            when: "{{{{workflow.parameters.environment}}}} != production"
            arguments:
              parameters:
                - {{name: step, value: deploy}}
                - {{name: payload, value: "{{{{tasks.list-models.outputs.parameters.result}}}}"}}
    - name: run-step
      retryStrategy:
        limit: 3
        retryPolicy: OnFailure
      activeDeadlineSeconds: 600
      inputs:
        parameters:
          - name: step
          - name: payload
      outputs:
        parameters:
          - name: result
            valueFrom:
              path: /tmp/result.json
      container:
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [foundryflow, step, run]
        args: ["{{{{inputs.parameters.step}}}}", --payload, "{{{{ inputs.parameters.payload }}}}"]
        env:
          - {{name: ATTEMPT, value: "{{{{retries}}}}"}}
          - {{name: POD_NAME, value: "{{{{pod.name}}}}"}}
          - {{name: RUN_ID, value: "{{{{workflow.uid}}}}"}}
    - name: report
      container:
        image: {IMAGE}
        args:
          - report
          - "{{{{workflow.name}}}} {{{{workflow.status}}}} {{{{workflow.failures}}}}"
          - "{{{{=sprig.date('2006-01-02', workflow.creationTimestamp)}}}}"
"""

SMOKE = f"""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: smoke-
spec:
  entrypoint: smoke
  templates:
    - name: smoke
      steps:
        - - name: probe
            template: probe
        - - name: echo
            template: echo
            withItems: [first, second]
            arguments:
              parameters:
                - {{name: message, value: "{{{{item}}}}: {{{{steps.probe.outputs.result}}}}"}}
    - name: probe
      script:
        image: python:3.12-slim
        command: [python]
        source: print("ok")
    - name: echo
      inputs:
        parameters:
          - name: message
      container:
        image: {IMAGE}
        args: [echo, "{{{{inputs.parameters.message}}}}"]
"""

NIGHTLY = f"""
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata:
  name: nightly-sync
spec:
  schedules: ["0 2 * * *", "30 */6 * * MON-FRI"]
  timezone: Europe/Berlin
  concurrencyPolicy: Forbid
  workflowSpec:
    entrypoint: sync
    arguments:
      parameters:
        - {{name: target, value: redis}}
    templates:
      - name: sync
        container:
          image: {IMAGE}
          args: [sync, "{{{{workflow.parameters.target}}}}", "{{{{workflow.scheduledTime}}}}"]
"""


def load(text: str) -> dict[str, Any]:
    """One YAML document as the dict the checks receive."""
    return yaml.safe_load(textwrap.dedent(text))


def template_doc(templates: str, *, spec: str = "", name: str = "bad") -> dict[str, Any]:
    """A WorkflowTemplate with entrypoint ``main`` around the given ``templates`` YAML list."""
    body = textwrap.indent(textwrap.dedent(templates).strip(), "    ")
    extra = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return load(
        f"apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata:\n  name: {name}\n"
        f"spec:\n  entrypoint: main\n{extra}\n  templates:\n{body}\n"
    )


@pytest.fixture(scope="session")
def schema() -> ArgoSchema:
    return load_schema()


# ------------------------------------------------------------------ valid documents


@pytest.mark.parametrize("text", [ONBOARDING, SMOKE, NIGHTLY], ids=["dag", "steps", "cron"])
def test_valid_documents_pass_schema_and_lint(schema: ArgoSchema, text: str) -> None:
    doc = load(text)
    assert schema.validate(doc) == []
    assert lint(doc) == []


def test_check_documents_is_empty_for_valid_documents(schema: ArgoSchema) -> None:
    docs = [load(ONBOARDING), load(SMOKE), load(NIGHTLY)]
    assert check_documents(docs, schema) == []


def test_documents_rendered_by_hera_pass(schema: ArgoSchema) -> None:
    """No false positives on what Hera emits: integer IntOrStrings, script sources, depends."""
    # Imported here so only this test pays Hera's ~1 s import.
    from hera.workflows import DAG, Container, Parameter, RetryStrategy, Script, Task
    from hera.workflows import WorkflowTemplate as HeraWorkflowTemplate
    from hera.workflows.models import ValueFrom

    with HeraWorkflowTemplate(
        name="hera-rendered",
        entrypoint="main",
        arguments=[Parameter(name="env", value="staging", enum=["staging", "prod"])],
    ) as template:
        run = Container(
            name="run-step",
            image=IMAGE,
            args=["{{inputs.parameters.step}}", "{{workflow.parameters.env}}"],
            inputs=[Parameter(name="step")],
            outputs=[Parameter(name="out", value_from=ValueFrom(path="/tmp/out"))],
            retry_strategy=RetryStrategy(limit=3, retry_policy="OnFailure"),
            active_deadline_seconds=300,
        )
        fan_out = Script(
            name="fan-out",
            image="python:3.12-slim",
            command=["python"],
            source='print(\'["a", "b"]\')',
        )
        with DAG(name="main"):
            first = Task(name="first", template=run, arguments={"step": "first"})
            fan = Task(name="fan", template=fan_out)
            each = Task(
                name="each", template=run, arguments={"step": "{{item}}"}, with_param=fan.result
            )
            second = Task(
                name="second", template=run, arguments={"step": first.get_parameter("out").value}
            )
            first >> [second, each]
            fan >> each

    assert check_documents([template.to_dict()], schema) == []


# ------------------------------------------------------------------ schema


def test_schema_is_loaded_once_and_found_next_to_the_repo() -> None:
    assert DEFAULT_SCHEMA_PATH.is_file()
    assert load_schema() is load_schema()
    assert load_schema(DEFAULT_SCHEMA_PATH) is load_schema()


def test_schema_path_can_be_overridden_by_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FOUNDRYFLOW_ARGO_SCHEMA", str(tmp_path / "elsewhere.json"))
    with pytest.raises(FileNotFoundError):
        load_schema()


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``value`` at dotted ``path`` (integers index lists)."""
    doc = copy.deepcopy(doc)
    *parents, last = [int(key) if key.isdigit() else key for key in path.split(".")]
    target: Any = doc
    for key in parents:
        target = target[key]
    target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "apiVersion",
            "argoproj.io/v1beta1",
            "apiVersion: 'argoproj.io/v1alpha1' was expected",
        ),
        ("spec.parallelism", "many", "spec.parallelism: 'many' is not of type 'integer'"),
        (
            "spec.templates.1.retryStrategy.limit",
            2.5,
            "spec.templates[1].retryStrategy.limit: 2.5 is not of type 'string', 'integer'",
        ),
        (
            "spec.templates.0.dag.tasks.0.arguments.parameters.0",
            {"value": "x"},
            "spec.templates[0].dag.tasks[0].arguments.parameters[0]: 'name' is a required property",
        ),
    ],
    ids=["const", "type", "int-or-string", "required"],
)
def test_schema_rejects_wrong_values_with_their_path(
    schema: ArgoSchema, path: str, value: Any, expected: str
) -> None:
    assert expected in schema.validate(set_path(load(ONBOARDING), path, value))


def test_schema_rejects_unknown_fields(schema: ArgoSchema) -> None:
    doc = load(ONBOARDING)
    doc["spec"]["templates"][1]["contianer"] = doc["spec"]["templates"][1].pop("container")
    assert schema.validate(doc) == [
        "spec.templates[1]: Additional properties are not allowed ('contianer' was unexpected)"
    ]


def test_schema_rejects_the_removed_single_cron_schedule(schema: ArgoSchema) -> None:
    doc = load(NIGHTLY)
    doc["spec"]["schedule"] = doc["spec"].pop("schedules")[0]
    errors = schema.validate(doc)
    assert "spec: 'schedules' is a required property" in errors
    assert "spec: Additional properties are not allowed ('schedule' was unexpected)" in errors


def test_unknown_kind_is_reported_by_both_checks(schema: ArgoSchema) -> None:
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "x"}}
    assert schema.validate(doc)[0].startswith("kind: 'Pipeline' is not one of")
    assert lint(doc)[0].startswith("Pipeline/x: kind: 'Pipeline' is not one of")


def test_check_documents_prefixes_schema_errors_and_adds_lint(schema: ArgoSchema) -> None:
    doc = load(ONBOARDING)
    doc["spec"]["templates"][1]["contianer"] = doc["spec"]["templates"][1].pop("container")
    problems = check_documents([doc, load(SMOKE)], schema)
    assert problems[0] == (
        "WorkflowTemplate/model-onboarding: spec.templates[1]: "
        "Additional properties are not allowed ('contianer' was unexpected)"
    )
    assert any("templates.run-step: needs exactly one template type" in p for p in problems)
    assert all(p.startswith("WorkflowTemplate/model-onboarding: ") for p in problems)


# ------------------------------------------------------------------ lint: DAGs and references

TWO_TASKS = """
- name: main
  dag:
    tasks:
      - {name: extract, template: work}
      - {name: load, template: work, depends: extract}
- name: work
  container: {image: busybox}
"""

WORK = """
- name: work
  inputs: {parameters: [{name: message}]}
  outputs: {parameters: [{name: rows, valueFrom: {path: /tmp/rows}}]}
  container: {image: busybox, args: ["{{inputs.parameters.message}}"]}
"""


def dag(tasks: str, *, extra_templates: str = WORK) -> str:
    """Templates YAML: a ``main`` DAG with ``tasks`` plus the shared ``work`` template."""
    indented = textwrap.indent(textwrap.dedent(tasks).strip(), "      ")
    return f"- name: main\n  dag:\n    tasks:\n{indented}\n{textwrap.dedent(extra_templates)}"


def args(value: str = "hi") -> str:
    """Flow-style ``arguments`` passing ``value`` as the ``message`` parameter of ``work``."""
    return f"arguments: {{parameters: [{{name: message, value: '{value}'}}]}}"


ARGS = args()

STEPS_IN_ONE_GROUP = (
    "- name: main\n  steps:\n"
    f"    - - {{name: probe, template: work, {ARGS}}}\n"
    f"      - {{name: echo, template: work, {args('{{steps.probe.outputs.result}}')}}}\n"
) + WORK


@pytest.mark.parametrize(
    ("templates", "spec", "expected"),
    [
        (
            dag(f"- {{name: load, template: wrok, {ARGS}}}"),
            "",
            "templates.main.tasks.load: references unknown template 'wrok'",
        ),
        (
            dag(f"- {{name: load, template: work, dependencies: [extrct], {ARGS}}}"),
            "",
            "templates.main.tasks.load: depends on unknown task 'extrct'",
        ),
        (
            dag(f"""
            - {{name: extract, template: work, {ARGS}}}
            - {{name: load, template: work, depends: "extract && (transfrm || extract.Failed)"}}
            """),
            "",
            "templates.main.tasks.load: depends on unknown task 'transfrm'",
        ),
        (
            dag(f"- {{name: load, template: work, depends: extract.Finished, {ARGS}}}"),
            "",
            "unknown result 'Finished' for task 'extract'",
        ),
        (
            dag(f"- {{name: load, template: work, depends: 'extract &&', {ARGS}}}"),
            "",
            "depends 'extract &&': expected a task name at the end",
        ),
        (
            dag(f"""
            - {{name: a, template: work, depends: c, {ARGS}}}
            - {{name: b, template: work, depends: a, {ARGS}}}
            - {{name: c, template: work, depends: b.Succeeded, {ARGS}}}
            """),
            "",
            "templates.main: dependency cycle a -> c -> b -> a",
        ),
        (
            dag(f"""
            - {{name: a, template: work, {ARGS}}}
            - {{name: a, template: work, {ARGS}}}
            """),
            "",
            "templates.main.tasks.a: task name 'a' is not unique in templates.main",
        ),
        (
            dag(f"- {{name: load_rows, template: work, {ARGS}}}"),
            "",
            "templates.main.tasks.load_rows: task name 'load_rows' is invalid",
        ),
        (
            dag(f"- {{name: load, template: work, templateRef: {{name: x, template: y}}, {ARGS}}}"),
            "",
            "templates.main.tasks.load: needs exactly one of template, templateRef, inline",
        ),
        (TWO_TASKS, "onExit: cleanup", "spec.onExit: references unknown template 'cleanup'"),
        (
            TWO_TASKS.replace("name: main", "name: mian"),
            "",
            "spec.entrypoint: references unknown template 'main'",
        ),
        (
            TWO_TASKS + "- name: work\n  suspend: {}\n",
            "",
            "templates[2]: template name 'work' is not unique",
        ),
        (
            TWO_TASKS + f"- name: {'x' * 129}\n  suspend: {{}}\n",
            "",
            "is longer than 128 characters",
        ),
        (
            TWO_TASKS + "- name: idle\n",
            "",
            "templates.idle: needs exactly one template type of container",
        ),
        (
            TWO_TASKS + "- {name: pull, container: {image: busybox, imagePullPolicy: Sometimes}}\n",
            "",
            "templates.pull.container.imagePullPolicy: 'Sometimes' is not one of "
            "['Always', 'IfNotPresent', 'Never']",
        ),
    ],
    ids=[
        "unknown-template",
        "unknown-dependency",
        "unknown-task-in-depends",
        "unknown-depends-result",
        "malformed-depends",
        "cycle",
        "duplicate-task",
        "invalid-task-name",
        "template-and-template-ref",
        "unknown-on-exit",
        "unknown-entrypoint",
        "duplicate-template",
        "template-name-too-long",
        "no-template-type",
        "bad-pull-policy",
    ],
)
def test_lint_rejects_structural_mistakes(templates: str, spec: str, expected: str) -> None:
    problems = lint(template_doc(templates, spec=spec))
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith("WorkflowTemplate/bad: ") for problem in problems)


# ------------------------------------------------------------------ lint: variables


@pytest.mark.parametrize(
    ("templates", "spec", "expected"),
    [
        (
            WORK.replace("{{inputs.parameters.message}}", "{{inputs.parameters.mesage}}")
            + "- {name: main, suspend: {}}",
            "",
            "templates.work.container.args[0]: {{inputs.parameters.mesage}}: "
            "'mesage' is not an input parameter of template 'work'",
        ),
        (
            dag(f"- {{name: load, template: work, {args('{{workflow.parameters.region}}')}}}"),
            "arguments: {parameters: [{name: environment, value: staging}]}",
            "templates.main.tasks.load.arguments.parameters[0].value: "
            "{{workflow.parameters.region}}: 'region' is not declared in spec.arguments.parameters",
        ),
        (
            dag(f"""
            - {{name: extract, template: work, {ARGS}}}
            - {{name: load, template: work, {args("{{tasks.extract.outputs.parameters.rows}}")}}}
            """),
            "",
            "templates.main.tasks.load.arguments.parameters[0].value: "
            "{{tasks.extract.outputs.parameters.rows}}: task 'extract' is not upstream of 'load'",
        ),
        (
            dag(f"""
            - {{name: extract, template: work, {ARGS}}}
            - name: load
              template: work
              depends: extract
              when: "{{{{tasks.extract.outputs.parameters.count}}}} > 0"
              {ARGS}
            """),
            "",
            "templates.main.tasks.load.when: {{tasks.extract.outputs.parameters.count}}: "
            "task 'extract' has no output parameter 'count'",
        ),
        (
            dag(f"- {{name: load, template: work, {args('{{tasks.ghost.outputs.result}}')}}}"),
            "",
            "{{tasks.ghost.outputs.result}}: unknown task 'ghost'",
        ),
        (
            dag(f"- {{name: load, template: work, {args('{{item}}')}}}"),
            "",
            "templates.main.tasks.load.arguments.parameters[0].value: {{item}}: "
            "only valid in a task or step with withItems, withParam or withSequence",
        ),
        (
            STEPS_IN_ONE_GROUP,
            "",
            "templates.main.steps[0].echo.arguments.parameters[0].value: "
            "{{steps.probe.outputs.result}}: step 'probe' does not run in an earlier step group",
        ),
        (
            "- {name: main, container: {image: busybox, args: ['{{ params.model_id }}']}}",
            "",
            "templates.main.container.args[0]: {{params.model_id}}: unknown variable",
        ),
        (
            "- {name: main, container: {image: busybox, args: ['{{tasks.a.outputs.result}}']}}",
            "",
            "{{tasks.a.outputs.result}}: tasks.* is only valid inside a DAG template",
        ),
        (
            "- {name: main, container: {image: busybox, args: ['{{retries}}']}}",
            "",
            "templates.main.container.args[0]: {{retries}}: template 'main' has no retryStrategy",
        ),
        (
            "- {name: main, container: {image: b, args: ['{{workflow.outputs.artifacts.x}}']}}",
            "",
            "no template output declares globalName 'x'",
        ),
    ],
    ids=[
        "undeclared-input",
        "undeclared-workflow-parameter",
        "non-upstream-task",
        "undeclared-task-output",
        "unknown-task",
        "item-outside-loop",
        "same-step-group",
        "unknown-prefix",
        "tasks-outside-dag",
        "retries-without-retry-strategy",
        "undeclared-global-output",
    ],
)
def test_lint_rejects_unresolvable_variables(templates: str, spec: str, expected: str) -> None:
    problems = lint(template_doc(templates, spec=spec))
    assert any(expected in problem for problem in problems), problems


def test_transitive_upstream_and_own_hooks_may_be_referenced() -> None:
    templates = dag("""
    - {name: a, template: work, arguments: {parameters: [{name: message, value: x}]}}
    - {name: b, template: work, depends: a, arguments: {parameters: [{name: message, value: x}]}}
    - name: c
      template: work
      depends: b
      arguments: {parameters: [{name: message, value: "{{tasks.a.outputs.parameters.rows}}"}]}
      hooks:
        exit:
          template: work
          arguments: {parameters: [{name: message, value: "{{tasks.c.status}}"}]}
    """)
    assert lint(template_doc(templates)) == []


# ------------------------------------------------------------------ lint: names and cron


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("metadata.name", "m" * 64, "metadata.name: '" + "m" * 64 + "' is longer than 63"),
        ("metadata.name", "Model_Onboarding", "is not a valid DNS-1123 subdomain"),
        ("metadata.name", "", "metadata.name: is required"),
    ],
    ids=["too-long", "invalid", "missing"],
)
def test_lint_checks_object_names(path: str, value: Any, expected: str) -> None:
    problems = lint(set_path(load(ONBOARDING), path, value))
    assert any(expected in problem for problem in problems), problems


def test_workflow_template_entrypoint_is_optional() -> None:
    doc = load(ONBOARDING)
    del doc["spec"]["entrypoint"]
    assert lint(doc) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("metadata.generateName", "s" * 59 + "-", "is longer than 58 characters"),
        ("metadata.generateName", "Smoke-", "is not a valid DNS-1123 subdomain prefix"),
        ("spec.entrypoint", None, "Workflow/smoke-: spec.entrypoint: is required"),
    ],
    ids=["generate-name-too-long", "generate-name-invalid", "workflow-needs-entrypoint"],
)
def test_lint_checks_workflows(path: str, value: Any, expected: str) -> None:
    problems = lint(set_path(load(SMOKE), path, value))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    "schedule",
    [
        "@daily",
        "@every 1h30m",
        "0 9-17/2 * JAN,jul MON-FRI",
        "CRON_TZ=UTC 5 4 * * ?",
        "*/15 0 1,15 * *",
    ],
)
def test_cron_accepts_standard_schedules(schedule: str) -> None:
    assert lint(set_path(load(NIGHTLY), "spec.schedules", [schedule])) == []


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("61 * * * *", "minute: '61' is outside 0-59"),
        ("0 2 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("*/0 * * * *", "minute: step '0' in '*/0' must be a positive integer"),
        ("0 0 * FOO *", "month: 'FOO' is not a number, range or '*'"),
        ("0 0 31-1 * *", "day of month: range '31-1' runs backwards"),
        ("0 0 * * 7", "day of week: '7' is outside 0-6"),
        ("@sometimes", "unknown descriptor '@sometimes'"),
    ],
)
def test_cron_rejects_bad_schedules(schedule: str, expected: str) -> None:
    problems = lint(set_path(load(NIGHTLY), "spec.schedules", ["0 1 * * *", schedule]))
    assert problems == [
        f"CronWorkflow/nightly-sync: spec.schedules[1]: {schedule!r} is not valid cron: {expected}"
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.schedules", [], "spec.schedules: at least one cron schedule is required"),
        ("spec.timezone", "", "spec.timezone: must be a non-empty IANA timezone name"),
        ("spec.timezone", "Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not a known IANA timezone"),
        ("spec.concurrencyPolicy", "Often", "spec.concurrencyPolicy: 'Often' is not one of"),
        ("metadata.name", "n" * 53, "is longer than 52 characters"),
        ("spec.workflowSpec.entrypoint", None, "spec.entrypoint: is required"),
        (
            "spec.workflowSpec.arguments",
            None,
            "{{workflow.parameters.target}}: 'target' is not declared",
        ),
    ],
    ids=["no-schedules", "empty-timezone", "unknown-timezone", "policy", "name", "entry", "param"],
)
def test_cron_workflow_rules(path: str, value: Any, expected: str) -> None:
    problems = lint(set_path(load(NIGHTLY), path, value))
    assert any(expected in problem for problem in problems), problems


def test_lint_survives_schema_invalid_shapes() -> None:
    doc = template_doc("- {name: main, dag: {tasks: oops}}\n- {name: x, steps: 3}\n- 7")
    assert lint(doc) == [
        "WorkflowTemplate/bad: templates.main.dag.tasks: a DAG needs at least one task"
    ]
