"""The DAG builder (seed 004, C.6): a use-case template becomes a pipeline spec.

The result is an ordinary pipeline in our spec format, validated like any file in
``pipelines/``, so both engines run it unchanged::

    cluster_health -> <components, by deployment order or by what their values read>
                   -> notify_complete        (rollback of every release on failure)

Two shapes come out of one function:

- for a template alone (:func:`build_pipeline` without a request): every component is a
  step and the choices are run parameters (the Airflow trigger form: a drop-down per
  component, the template's parameters with their bounds); an optional component that is
  not selected is skipped by its condition;
- for a deployment request: the request is validated against the template first (a
  missing required selection, an unknown parameter, a value out of bounds are errors before
  anything runs), unselected optional components are left out, and the request's values
  become the parameters' defaults (``foundryflow usecase deploy`` and ``render``).

Each component step carries everything it needs (chart, values, the catalog entries it can
choose from), so a run depends on the spec pinned when it started, never on files that may
change while it runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from foundryflow.spec.loader import parse_pipeline
from foundryflow.spec.model import Pipeline
from foundryflow.usecase.catalog import ComponentCatalog
from foundryflow.usecase.template import (
    Component,
    UseCaseTemplate,
    UseCaseTemplateError,
    check_parameter_value,
    rewrite_parameters,
)

DEPLOYMENT_NAME = r"^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$"
"""A DNS label of at most 30 characters: ``<name>-<component>`` stays a Helm release name."""
CALLBACK_TOPIC = "foundryflow:usecase-events"
"""Where use-case progress events go by default (a Redis Stream)."""
PIPELINE_TIMEOUT_SECONDS = 7200
"""Seed 004: two hours for a whole deployment."""
STEP_GRACE_SECONDS = 120
"""A component step may run this much longer than its chart's wait timeout."""


class DeploymentRequest(BaseModel):
    """What a user asks for (seed: POST /deployments): the input of ``usecase deploy``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=DEPLOYMENT_NAME)] = Field(
        description="Deployment name: a DNS label of at most 30 characters."
    )
    cluster: str = Field(min_length=1, max_length=100, description="Cluster name or id.")
    selections: dict[str, str | bool | None] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    created_by: str | None = Field(default=None, max_length=250)
    callback_topics: list[str] = Field(default_factory=lambda: [CALLBACK_TOPIC], max_length=10)

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"cluster {value!r} is not a cluster name or id")
        return value


def release_name(deployment: str, component: str) -> str:
    return f"{deployment}-{component.replace('_', '-')}"


def _selection_parameter(component: Component, default: Any) -> dict[str, Any]:
    if component.type == "helm":
        return {
            "name": component.name,
            "type": "boolean",
            "default": bool(default),
            "description": f"Deploy {component.title} (chart {component.chart.ref})."  # type: ignore[union-attr]
            + (f" {component.description}" if component.description else ""),
        }
    parameter: dict[str, Any] = {
        "name": component.name,
        "type": "string",
        "required": component.required,
        "enum": list(component.compatible_components),
        "description": f"{component.title} ({component.type})"
        + (f": {component.description}" if component.description else "")
        + ("" if component.required else ". Optional: leave empty to deploy without it."),
    }
    if default is not None:
        parameter["default"] = default
    return parameter


def _template_parameter(name: str, template: UseCaseTemplate, default: Any) -> dict[str, Any]:
    declared = template.parameters[name]
    parameter: dict[str, Any] = {
        "name": name,
        "type": declared.type,
        "required": default is None,
        "description": declared.description or name.replace("_", " "),
    }
    if default is not None:
        parameter["default"] = default
    if declared.min is not None:
        parameter["minimum"] = declared.min
    if declared.max is not None:
        parameter["maximum"] = declared.max
    if declared.enum is not None:
        parameter["enum"] = list(declared.enum)
    return parameter


def validate_request(
    template: UseCaseTemplate, catalog: ComponentCatalog, request: DeploymentRequest
) -> dict[str, Any]:
    """The request's selections with defaults filled in; every problem reported at once."""
    problems: list[str] = []
    names = {c.name for c in template.components}
    for unknown in sorted(set(request.selections) - names):
        problems.append(f"selections: {unknown!r} is not a component of {template.name}")
    for unknown in sorted(set(request.parameters) - set(template.parameters)):
        known = ", ".join(sorted(template.parameters)) or "none"
        problems.append(f"parameters: unknown parameter {unknown!r} (known: {known})")
    for name, value in request.parameters.items():
        if name in template.parameters:
            try:
                check_parameter_value(template.parameters[name], value, f"parameters.{name}")
            except ValueError as exc:
                problems.append(str(exc))
    selected: dict[str, Any] = {}
    for component in template.components:
        choice = request.selections.get(component.name, _default_choice(component))
        if component.type == "helm":
            if not isinstance(choice, bool):
                problems.append(
                    f"selections.{component.name}: a helm component is selected with "
                    f"true or false, not {choice!r}"
                )
            elif component.required and not choice:
                problems.append(f"selections.{component.name}: required, cannot be left out")
            selected[component.name] = choice
            continue
        if choice is None:
            if component.required:
                problems.append(
                    f"selections.{component.name}: required; choose one of "
                    f"{component.compatible_components}"
                )
        elif choice not in component.compatible_components:
            problems.append(
                f"selections.{component.name}: {choice!r} is not one of "
                f"{component.compatible_components}"
            )
        selected[component.name] = choice
    try:
        catalog.check_template(template)
    except UseCaseTemplateError as exc:
        problems.extend(exc.problems)
    if problems:
        raise UseCaseTemplateError(f"request {request.name!r}", problems)
    return selected


def _default_choice(component: Component) -> str | bool | None:
    if component.type == "helm":
        return component.required
    return component.default_component


def _component_step(
    component: Component,
    catalog: ComponentCatalog,
    depends_on: list[str],
) -> dict[str, Any]:
    release = f"{{{{ params.deployment_name }}}}-{component.name.replace('_', '-')}"
    common = {
        "cluster": "{{ steps.cluster_health.outputs.cluster_id }}",
        "release_name": release,
        "namespace": "{{ steps.cluster_health.outputs.namespace }}",
    }
    step: dict[str, Any] = {
        "id": component.name,
        "name": f"Deploy {component.title}",
        "depends_on": ["cluster_health", *depends_on],
    }
    if component.chart is not None:
        chart = component.chart
        step["action"] = "usecase.helm_deploy"
        step["params"] = {
            **common,
            "chart_ref": chart.ref,
            "chart_version": chart.version,
            "values": rewrite_parameters(dict(chart.values)),
            "timeout_seconds": chart.timeout_seconds,
            "wait": True,
        }
        step["timeout_seconds"] = chart.timeout_seconds + STEP_GRACE_SECONDS
        if not component.required:
            step["condition"] = f"{{{{ params.{component.name} }}}}"
        return step
    step["action"] = "usecase.deployment_create"
    step["params"] = {
        **common,
        "component_type": component.type,
        "selected": f"{{{{ params.{component.name} }}}}",
        "choices": {
            choice: catalog.entry(choice).model_dump(mode="json", exclude={"description"})
            for choice in component.compatible_components
        },
    }
    step["timeout_seconds"] = 600 + STEP_GRACE_SECONDS
    if not component.required:
        step["condition"] = f"{{{{ params.{component.name} is not none }}}}"
    return step


def build_spec(
    template: UseCaseTemplate,
    catalog: ComponentCatalog,
    request: DeploymentRequest | None = None,
) -> dict[str, Any]:
    """The pipeline spec (as data) for ``template``, or for one request of it."""
    catalog.check_template(template)
    selected = validate_request(template, catalog, request) if request is not None else None
    included = [
        c
        for c in template.ordered_components
        if selected is None or selected[c.name] not in (None, False)
    ]
    kept = {c.name for c in included}
    upstream = template.upstream()

    parameters: list[dict[str, Any]] = [
        {
            "name": "deployment_name",
            "type": "string",
            "required": request is None,
            "description": "Name of the deployment: a DNS label of at most 30 characters; "
            "release names and the namespace are made from it.",
            **({"default": request.name} if request else {}),
        },
        {
            "name": "cluster",
            "type": "string",
            "required": request is None,
            "description": "Target cluster (name or id).",
            **({"default": request.cluster} if request else {}),
        },
    ]
    for component in template.components:
        if component.name in kept and not (component.type == "helm" and component.required):
            default = selected[component.name] if selected else _default_choice(component)
            parameters.append(_selection_parameter(component, default))
    for name, declared in template.parameters.items():
        default = request.parameters.get(name, declared.default) if request else declared.default
        parameters.append(_template_parameter(name, template, default))
    parameters += [
        {
            "name": "deployment_id",
            "type": "string",
            "description": "Id of a deployment record made beforehand (foundryflow usecase "
            "deploy); empty: the run records the deployment itself.",
        },
        {
            "name": "created_by",
            "type": "string",
            "description": "Who asked for the deployment (recorded on it).",
            **({"default": request.created_by} if request and request.created_by else {}),
        },
        {
            "name": "callback_topics",
            "type": "array",
            "default": list(request.callback_topics) if request else [CALLBACK_TOPIC],
            "description": "Redis Streams that receive the deployment's progress events.",
        },
    ]

    steps: list[dict[str, Any]] = [
        {
            "id": "cluster_health",
            "name": "Check the cluster and record the deployment",
            "action": "usecase.cluster_health",
            "params": {
                "cluster": "{{ params.cluster }}",
                "deployment_name": "{{ params.deployment_name }}",
                "deployment_id": "{{ params.deployment_id }}",
                "created_by": "{{ params.created_by }}",
                "template": template.name,
                "template_version": template.version,
                "components": [_slot(c, c.name in kept) for c in template.ordered_components],
                "parameters": {name: f"{{{{ params.{name} }}}}" for name in template.parameters},
                "minimum_gpus": template.resources.minimum.gpu if template.resources else 0,
            },
        }
    ]
    for component in included:
        depends = [name for name in upstream[component.name] if name in kept]
        if template.deployment_order is not None and not depends:
            # sequential order through a left-out component: follow the last one kept
            position = template.deployment_order.index(component.name)
            earlier = [n for n in template.deployment_order[:position] if n in kept]
            depends = earlier[-1:]
        steps.append(_component_step(component, catalog, depends))
    steps.append(
        {
            "id": "notify_complete",
            "name": "Notify",
            "action": "usecase.notification",
            "depends_on": [c.name for c in included] or ["cluster_health"],
            "params": {
                "deployment_id": "{{ steps.cluster_health.outputs.deployment_id }}",
                "level": "success",
                "message": f"Use case '{{{{ params.deployment_name }}}}' ({template.name}) "
                "deployed successfully",
                "endpoints": {
                    c.name: f"{{{{ steps.{c.name}.outputs.endpoint_url | default(none) }}}}"
                    for c in included
                },
            },
        }
    )
    return {
        "name": template.pipeline_name,
        "version": template.version,
        "description": f"Deploy the use case {template.display_name or template.name}: "
        + (template.description.strip() or ", ".join(c.name for c in template.components)),
        "parameters": parameters,
        "settings": {"on_failure": "rollback", "timeout_seconds": PIPELINE_TIMEOUT_SECONDS},
        "steps": steps,
        "outputs": {
            "deployment_id": "{{ steps.cluster_health.outputs.deployment_id }}",
            "namespace": "{{ steps.cluster_health.outputs.namespace }}",
            **{
                f"{c.name}_endpoint": f"{{{{ steps.{c.name}.outputs.endpoint_url }}}}"
                for c in included
            },
        },
    }


def _slot(component: Component, kept: bool) -> dict[str, Any]:
    """How ``cluster_health`` records a component: what was chosen, or whether a helm
    component is deployed (always, when it is required)."""
    if not kept:
        selected: Any = None if component.type != "helm" else False
    elif component.type == "helm" and component.required:
        selected = True
    else:
        selected = f"{{{{ params.{component.name} }}}}"
    chart = component.chart.ref if component.chart is not None else None
    return {"name": component.name, "type": component.type, "selected": selected, "chart": chart}


def build_pipeline(
    template: UseCaseTemplate,
    catalog: ComponentCatalog,
    request: DeploymentRequest | None = None,
) -> Pipeline:
    """:func:`build_spec`, validated as a pipeline (actions, references, cycles)."""
    spec = build_spec(template, catalog, request)
    return parse_pipeline(spec, f"usecase template {template.name}", require_actions=False)


def run_params(request: DeploymentRequest, deployment_id: str | None = None) -> dict[str, Any]:
    """The run parameters (DAG conf) of a request for the template's own pipeline."""
    return {
        "deployment_name": request.name,
        "cluster": request.cluster,
        **request.selections,
        **request.parameters,
        "deployment_id": deployment_id,
        "created_by": request.created_by,
        "callback_topics": list(request.callback_topics),
    }
