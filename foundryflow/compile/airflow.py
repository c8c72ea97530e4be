"""Compile a pipeline spec into an Airflow DAG.

Shape of every generated DAG::

    ff_start >> <steps, by depends_on> >> [ff_rollback] >> [finally steps] >> ff_finish

* parameters become ``Param``s, so the trigger form shows enums as drop-downs, bounds,
  descriptions and required fields;
* a ``foreach`` step becomes ``<id>__fanout`` plus a mapped ``ActionOperator``;
* ``ff_rollback`` (only for ``on_failure: rollback``) waits for *all* steps
  (``all_done``) rather than firing on the first failure (``one_failed``): compensating
  while sibling steps are still creating resources would leave those behind;
* ``ff_finish`` records the final status and fails the run if the execution failed.

Building a DAG reads only the spec: no database or network work at parse time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, TriggerRule

from foundryflow.actions.registry import ActionRegistry
from foundryflow.actions.registry import registry as default_registry
from foundryflow.spec.loader import PipelineCatalog
from foundryflow.spec.model import Parameter, Pipeline, Step
from operators import (
    ActionOperator,
    FanoutOperator,
    FinishExecutionOperator,
    RollbackOperator,
    StartExecutionOperator,
)

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
START, ROLLBACK, FINISH = "ff_start", "ff_rollback", "ff_finish"

_JSON_TYPES: dict[str, Any] = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
    "json": ["object", "array"],
}


def to_param(parameter: Parameter) -> Param:
    """A ``Param`` whose JSON schema mirrors the spec parameter (the UI form reads it)."""
    json_type = _JSON_TYPES[parameter.type]
    schema: dict[str, Any] = {}
    if not parameter.required:
        types = json_type if isinstance(json_type, list) else [json_type]
        json_type = ["null", *types]
    schema["type"] = json_type
    if parameter.enum is not None:
        schema["enum"] = [*parameter.enum, *([None] if not parameter.required else [])]
    if parameter.minimum is not None:
        schema["minimum"] = parameter.minimum
    if parameter.maximum is not None:
        schema["maximum"] = parameter.maximum
    if parameter.description:
        schema["description"] = parameter.description
    schema["title"] = parameter.name.replace("_", " ").capitalize()
    if parameter.has_default or not parameter.required:
        return Param(parameter.default, **schema)
    return Param(**schema)


def _step_timeout(step: Step, registry: ActionRegistry) -> timedelta | None:
    seconds = step.timeout_seconds
    if seconds is None and registry.status(step.action) is None:
        seconds = registry.get(step.action).meta.timeout_seconds
    return timedelta(seconds=seconds) if seconds else None


def _doc(pipeline: Pipeline) -> str:
    rows = "\n".join(
        f"| `{s.id}` | {s.title} | `{s.action}` | {', '.join(s.depends_on) or '-'} |"
        for s in pipeline.steps
    )
    return (
        f"{pipeline.description}\n\n"
        f"Compiled by foundryflow from pipeline `{pipeline.name}` version {pipeline.version} "
        f"(on_failure: `{pipeline.settings.on_failure}`).\n\n"
        f"| step | name | action | depends on |\n|---|---|---|---|\n{rows}\n"
    )


def build_dag(pipeline: Pipeline, registry: ActionRegistry = default_registry) -> DAG:
    settings = pipeline.settings
    step_rule = (
        TriggerRule.ALL_DONE if settings.on_failure == "continue" else TriggerRule.NONE_FAILED
    )
    with DAG(
        dag_id=pipeline.name,
        description=pipeline.description[:200] or None,
        doc_md=_doc(pipeline),
        params={p.name: to_param(p) for p in pipeline.parameters},
        schedule=settings.schedule,
        start_date=START_DATE,
        catchup=False,
        dagrun_timeout=timedelta(seconds=settings.timeout_seconds)
        if settings.timeout_seconds
        else None,
        tags=["foundryflow", f"v{pipeline.version}"],
        default_args={"owner": "foundryflow", "retries": 0},
    ) as dag:
        start = StartExecutionOperator(task_id=START, spec=pipeline.model_dump(mode="json"))
        tasks: dict[str, BaseOperator] = {}
        entry: dict[str, BaseOperator] = {}  # the task a step's dependencies point at
        for step in pipeline.steps:
            rule = TriggerRule.ALL_DONE if step.is_finally else step_rule
            common: dict[str, Any] = {
                "step_id": step.id,
                "action": step.action,
                "trigger_rule": rule,
                "execution_timeout": _step_timeout(step, registry),
                "doc_md": f"**{step.title}** runs action `{step.action}`.",
            }
            if step.foreach is None:
                tasks[step.id] = entry[step.id] = ActionOperator(task_id=step.id, **common)
            else:
                fan = FanoutOperator(
                    task_id=f"{step.id}__fanout", step_id=step.id, trigger_rule=rule
                )
                mapped = ActionOperator.partial(task_id=step.id, **common).expand(
                    item_index=fan.output
                )
                entry[step.id] = fan
                tasks[step.id] = mapped  # type: ignore[assignment]
                fan >> mapped
        regular = pipeline.regular_steps
        for step in pipeline.steps:
            for dep in step.depends_on:
                tasks[dep] >> entry[step.id]
        for step in regular:
            if not step.depends_on:
                start >> entry[step.id]
        depended = {dep for step in regular for dep in step.depends_on}
        regular_leaves = [tasks[s.id] for s in regular if s.id not in depended]
        closing: list[BaseOperator] = regular_leaves
        if settings.on_failure == "rollback":
            rollback = RollbackOperator(task_id=ROLLBACK, trigger_rule=TriggerRule.ALL_DONE)
            regular_leaves >> rollback
            closing = [rollback]
        for step in pipeline.finally_steps:
            if not step.depends_on:
                closing >> entry[step.id]
        finish = FinishExecutionOperator(task_id=FINISH, trigger_rule=TriggerRule.ALL_DONE)
        [start, *closing, *(tasks[s.id] for s in pipeline.finally_steps)] >> finish
    return dag


def build_dags(catalog: PipelineCatalog | None = None) -> dict[str, DAG]:
    """DAGs of every valid spec; ``dags/foundryflow_spec_errors.py`` reports broken ones."""
    catalog = catalog or PipelineCatalog(require_actions=False)
    dags: dict[str, DAG] = {}
    for pipeline in catalog.load_valid():
        dags[pipeline.name] = build_dag(pipeline, catalog.registry)
    return dags
