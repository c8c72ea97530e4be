"""``guardrail.plan_deployment``: joins what step 4 found with what step 8 recommended into
``deploy_models``' input, and records the plan on the workflow record (seed 000's
``models_to_deploy`` / ``models_to_reuse`` / ``recommended_clusters`` step data)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field, JsonValue

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail.create_deployment import ReusedModel
from foundryflow.actions.guardrail.validate_cluster_fit import PerModelConfig
from foundryflow.store.guardrail import GuardrailWorkflow


class RuleToDeploy(ActionParams):
    rule_id: UUID
    model_uri: str


class PlanDeploymentParams(ActionParams):
    workflow_id: UUID
    rules_to_deploy: list[RuleToDeploy]
    models_to_reuse: list[ReusedModel]
    per_model_configs: list[PerModelConfig] = Field(default_factory=list)
    recommended_clusters: list[dict[str, JsonValue]] = Field(default_factory=list)


class PlanDeploymentOutputs(ActionOutputs):
    models_to_deploy: list[dict[str, Any]]
    """``deploy_models`` entries: {rule_id, model_id, cluster_id, deployment_config}."""
    needs_deployment: bool


class PlanDeployment(Action[PlanDeploymentParams, PlanDeploymentOutputs]):
    meta = ActionMeta(
        name="guardrail.plan_deployment",
        description="Give every rule whose model needs an endpoint the placement step 8 chose "
        "for its model; record the plan on the workflow.",
        idempotent=True,
    )
    Params = PlanDeploymentParams
    Outputs = PlanDeploymentOutputs

    def run(self, ctx: ActionContext, params: PlanDeploymentParams) -> PlanDeploymentOutputs:
        placed = {config.model_uri: config for config in params.per_model_configs}
        if missing := sorted({r.model_uri for r in params.rules_to_deploy} - placed.keys()):
            raise ValueError(f"no cluster placement was recommended for {', '.join(missing)}")
        to_deploy: list[dict[str, Any]] = [
            {
                "rule_id": str(rule.rule_id),
                "model_id": placed[rule.model_uri].model_id,
                "cluster_id": str(placed[rule.model_uri].cluster_id),
                "deployment_config": placed[rule.model_uri].deployment_config.model_dump(
                    mode="json", exclude_none=True
                ),
            }
            for rule in params.rules_to_deploy
        ]
        with ctx.session_factory() as session, session.begin():
            record = session.get(GuardrailWorkflow, params.workflow_id)
            if record is None:
                raise LookupError(f"guardrail workflow {params.workflow_id} does not exist")
            record.models_to_deploy = to_deploy
            record.models_to_reuse = [m.model_dump(mode="json") for m in params.models_to_reuse]
            record.per_model_configs = [c.model_dump(mode="json") for c in params.per_model_configs]
            record.recommended_clusters = params.recommended_clusters
        return PlanDeploymentOutputs(models_to_deploy=to_deploy, needs_deployment=bool(to_deploy))
