"""``guardrail.create_deployment``: put the profile to work (seed 000, step 12).

Creates the guardrail deployment, its target endpoints (step 10; none when standalone) and
one rule deployment per model-based rule the profile enables, naming the endpoint that serves
the rule's model: one deploy_models just started, or an existing one the workflow reuses
(seed H1/I1: running, unhealthy, deploying and pending endpoints are reusable).

Everything is checked in the same transaction before the first insert, and every problem is
reported at once: unknown target endpoints, a rule without an endpoint, an endpoint serving
another model or one that cannot be reused. Not idempotent: each run is a new deployment.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._deploy import DeployedModel, EnabledRule, enabled_rules
from foundryflow.guardrail.status import ModelDeploymentStatus
from foundryflow.store.catalog import Model
from foundryflow.store.guardrail import (
    Endpoint,
    GuardrailDeployment,
    GuardrailDeploymentTarget,
    GuardrailProfile,
    GuardrailRuleDeployment,
)


class ReusedModel(BaseModel):
    """An entry of ``models_to_reuse``: a rule served by an endpoint the project already has."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    rule_id: UUID
    model_id: int
    endpoint_id: UUID


class CreateDeploymentParams(ActionParams):
    profile_id: UUID
    project_id: UUID
    endpoint_ids: list[UUID] | None = Field(
        default=None, description="Endpoints to guard; null or empty when standalone."
    )
    is_standalone: bool
    deployed_models: list[DeployedModel]
    reused_models: list[ReusedModel]
    user_id: str = Field(min_length=1, max_length=100)


class CreateDeploymentOutputs(ActionOutputs):
    deployment_id: UUID


class CreateDeployment(Action[CreateDeploymentParams, CreateDeploymentOutputs]):
    meta = ActionMeta(
        name="guardrail.create_deployment",
        description="Create the guardrail deployment, its targets and its rule deployments.",
    )
    Params = CreateDeploymentParams
    Outputs = CreateDeploymentOutputs

    def run(self, ctx: ActionContext, params: CreateDeploymentParams) -> CreateDeploymentOutputs:
        with ctx.session_factory() as session, session.begin():
            profile = session.get(GuardrailProfile, params.profile_id)
            if profile is None or profile.project_id != params.project_id:
                raise LookupError(
                    f"guardrail profile {params.profile_id} does not exist in project "
                    f"{params.project_id}"
                )
            model_rules = [e for e in enabled_rules(session, profile) if e.rule.model_uri]
            targets = list(dict.fromkeys(params.endpoint_ids or ()))
            problems = _target_problems(session, params, targets)
            serving, serving_problems = _serving(session, params, model_rules)
            problems += serving_problems
            if problems:
                raise ValueError("cannot create the guardrail deployment: " + "; ".join(problems))
            deployment = GuardrailDeployment(
                profile_id=profile.id,
                project_id=params.project_id,
                created_by=params.user_id,
                targets=[GuardrailDeploymentTarget(endpoint_id=e) for e in targets],
                rule_deployments=[
                    GuardrailRuleDeployment(rule_id=rule_id, endpoint_id=endpoint_id)
                    for rule_id, endpoint_id in serving.items()
                ],
            )
            session.add(deployment)
            session.flush()
            ctx.log.info(
                "created guardrail deployment %s: %d targets, %d rule deployments",
                deployment.id,
                len(targets),
                len(serving),
            )
            return CreateDeploymentOutputs(deployment_id=deployment.id)


def _target_problems(
    session: Session, params: CreateDeploymentParams, targets: list[UUID]
) -> list[str]:
    if params.is_standalone and targets:
        return ["a standalone deployment guards no endpoints: endpoint_ids must be empty"]
    if not params.is_standalone and not targets:
        return ["endpoint_ids must name the endpoints to guard (or deploy standalone)"]
    known = set(
        session.scalars(
            select(Endpoint.id).where(
                Endpoint.id.in_(targets), Endpoint.project_id == params.project_id
            )
        )
    )
    if unknown := [str(e) for e in targets if e not in known]:
        return [f"unknown endpoints (not in project {params.project_id}): {', '.join(unknown)}"]
    return []


def _serving(
    session: Session, params: CreateDeploymentParams, model_rules: Iterable[EnabledRule]
) -> tuple[dict[UUID, UUID], list[str]]:
    """Rule id -> the endpoint serving its model, for every enabled model-based rule; and
    what is wrong with the given entries."""
    wanted = {enabled.rule.id: enabled.rule.model_uri for enabled in model_rules}
    entries = [(m.rule_id, m.model_id, m.endpoint_id, False) for m in params.deployed_models]
    entries += [(m.rule_id, m.model_id, m.endpoint_id, True) for m in params.reused_models]
    endpoints = {
        endpoint.id: (endpoint, uri)
        for endpoint, uri in session.execute(
            select(Endpoint, Model.uri)
            .join(Model, Model.id == Endpoint.model_id)
            .where(Endpoint.id.in_({entry[2] for entry in entries}))
        ).tuples()
    }
    serving: dict[UUID, UUID] = {}
    problems: list[str] = []
    for rule_id, model_id, endpoint_id, reused in entries:
        found = endpoints.get(endpoint_id)
        if rule_id in serving:
            problems.append(f"rule {rule_id} is given more than one endpoint")
        elif rule_id not in wanted:
            problems.append(f"rule {rule_id} is not a model-based rule enabled by the profile")
        elif found is None or found[0].project_id != params.project_id:
            problems.append(f"endpoint {endpoint_id} does not exist in project {params.project_id}")
        elif found[0].model_id != model_id or found[1] != wanted[rule_id]:
            problems.append(
                f"endpoint {endpoint_id} serves {found[1]}, but rule {rule_id} needs "
                f"{wanted[rule_id]} (model {model_id} given)"
            )
        elif reused and not ModelDeploymentStatus(found[0].status.value).can_reuse:
            problems.append(
                f"endpoint {endpoint_id} is {found[0].status.value} and cannot be reused"
            )
        else:
            serving[rule_id] = endpoint_id
    problems += [
        f"rule {rule_id} needs {uri} but no endpoint serves it (neither deployed nor reused)"
        for rule_id, uri in wanted.items()
        if rule_id not in serving and all(entry[0] != rule_id for entry in entries)
    ]
    return serving, problems
