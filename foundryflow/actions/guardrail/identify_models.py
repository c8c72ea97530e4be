"""``guardrail.identify_models``: step 4 of seed 000's workflow, as the first step of the
one-form ``guardrail-deployment-workflow`` pipeline.

Checks the probe selection, derives the status of every model the enabled rules need, plans
the skips (nothing to onboard: skip 5; all deployed: skip 6-8; standalone: skip 10) and
opens the workflow record. Everything later steps branch on is an output here, so the
branches are ordinary ``condition``s that both engines evaluate the same way.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field
from sqlalchemy import select

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._plan import Targets
from foundryflow.guardrail.status import (
    ProbeSelection,
    WorkflowStep,
    load_rule_catalog,
    plan_skips,
    query_model_statuses,
    select_rules,
)
from foundryflow.store.guardrail import (
    CONN_ID_PATTERN,
    GuardrailProvider,
    GuardrailRule,
    GuardrailWorkflow,
    WorkflowStatus,
)


class IdentifyModelsParams(ActionParams):
    workflow_id: UUID
    provider_id: UUID
    project_id: UUID
    probe_selections: list[ProbeSelection] = Field(min_length=1)
    is_standalone: bool
    credential_id: str | None = Field(default=None, pattern=CONN_ID_PATTERN)
    model_specs: dict[str, Targets] = Field(
        default_factory=dict, description="Model uri -> deployment targets (step 7)."
    )
    user_id: str = Field(min_length=1, max_length=100)


class IdentifyModelsOutputs(ActionOutputs):
    workflow_id: UUID
    model_statuses: list[dict[str, Any]]
    skipped_steps: list[int]
    skip_to_step: int | None
    needs_onboarding: bool
    needs_deployment: bool
    models_to_onboard: list[dict[str, Any]]
    """``batch_onboard_models`` entries: {rule_id, model_uri, model_provider_type}."""
    models_to_place: list[dict[str, Any]]
    """One per distinct model to deploy: {model_uri, deployment_config} (step 7's targets)."""
    rules_to_deploy: list[dict[str, Any]]
    """{rule_id, model_uri} of every rule whose model needs a new endpoint."""
    models_to_reuse: list[dict[str, Any]]
    """``create_deployment``'s reused models: {rule_id, model_id, endpoint_id}."""


class IdentifyModels(Action[IdentifyModelsParams, IdentifyModelsOutputs]):
    meta = ActionMeta(
        name="guardrail.identify_models",
        description="Check the probe selection, derive each model's status, plan the skips "
        "and open the workflow record (seed 000, step 4).",
        idempotent=True,
    )
    Params = IdentifyModelsParams
    Outputs = IdentifyModelsOutputs

    def run(self, ctx: ActionContext, params: IdentifyModelsParams) -> IdentifyModelsOutputs:
        with ctx.session_factory() as session, session.begin():
            provider = session.get(GuardrailProvider, params.provider_id)
            if provider is None:
                raise LookupError(f"guardrail provider {params.provider_id} does not exist")
            catalog = load_rule_catalog(session, params.probe_selections, params.provider_id)
            enabled = select_rules(params.probe_selections, catalog)
            rule_ids = [rule_id for rules in enabled.values() for rule_id in rules]
            statuses = query_model_statuses(session, params.project_id, rule_ids)
            plan = plan_skips((s.status for s in statuses), params.is_standalone)
            provider_of_rule = select(GuardrailRule.id, GuardrailRule.model_provider_type).where(
                GuardrailRule.id.in_([s.rule_id for s in statuses])
            )
            providers = {rule_id: kind for rule_id, kind in session.execute(provider_of_rule)}
            to_onboard = [
                {
                    "rule_id": str(s.rule_id),
                    "model_uri": s.model_uri,
                    "model_provider_type": str(providers[s.rule_id]),
                }
                for s in statuses
                if s.requires_onboarding
            ]
            if to_onboard and params.credential_id is None:
                needing = sorted({entry["model_uri"] for entry in to_onboard})
                raise ValueError(
                    f"{', '.join(needing)} must be onboarded first (step 5): give "
                    "credential_id, the Airflow connection holding the provider's token"
                )
            to_deploy = [s for s in statuses if s.requires_deployment]
            # a spec for a model that turns out to be deployed already is simply not needed
            unknown_specs = set(params.model_specs) - {s.model_uri for s in statuses}
            if unknown_specs:
                raise ValueError(
                    f"model_specs names models no enabled rule uses: {sorted(unknown_specs)}"
                )
            places = {
                s.model_uri: {
                    "model_uri": s.model_uri,
                    "deployment_config": params.model_specs.get(s.model_uri, Targets()).model_dump(
                        mode="json", exclude_none=True
                    ),
                }
                for s in to_deploy
            }
            reuse = [
                {
                    "rule_id": str(s.rule_id),
                    "model_id": s.model_id,
                    "endpoint_id": str(s.endpoint_id),
                }
                for s in statuses
                if s.can_reuse
            ]
            dumped: list[dict[str, Any]] = [s.model_dump(mode="json") for s in statuses]
            record = session.get(GuardrailWorkflow, params.workflow_id) or GuardrailWorkflow(
                id=params.workflow_id
            )
            record.project_id = params.project_id
            record.provider_id = params.provider_id
            record.created_by = params.user_id
            record.status = WorkflowStatus.IN_PROGRESS
            record.current_step = WorkflowStep.MODEL_STATUS
            record.model_statuses = dumped
            record.skip_to_step = plan.skip_to_step
            record.pipeline_execution_id = ctx.execution_id
            session.add(record)
        ctx.log.info(
            "%d model-based rule(s); skipping steps %s",
            len(statuses),
            sorted(int(step) for step in plan.skipped) or "none",
        )
        return IdentifyModelsOutputs(
            workflow_id=params.workflow_id,
            model_statuses=dumped,
            skipped_steps=sorted(int(step) for step in plan.skipped),
            skip_to_step=plan.skip_to_step,
            needs_onboarding=bool(to_onboard),
            needs_deployment=bool(to_deploy),
            models_to_onboard=to_onboard,
            models_to_place=list(places.values()),
            rules_to_deploy=[
                {"rule_id": str(s.rule_id), "model_uri": s.model_uri} for s in to_deploy
            ],
            models_to_reuse=reuse,
        )
