"""``guardrail.complete_workflow``: the last step of ``guardrail-deployment-workflow``;
records on the workflow what was deployed (seed 000's ``deployment_id`` and
``deployed_endpoint_ids`` step data) and marks it completed. ``guardrail.rollback`` is its
counterpart on failure."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.guardrail.status import WorkflowStep
from foundryflow.store.guardrail import GuardrailWorkflow, WorkflowStatus


class CompleteWorkflowParams(ActionParams):
    workflow_id: UUID
    deployment_id: UUID
    deployed_endpoint_ids: list[UUID] = Field(default_factory=list)


class CompleteWorkflowOutputs(ActionOutputs):
    status: WorkflowStatus


class CompleteWorkflow(Action[CompleteWorkflowParams, CompleteWorkflowOutputs]):
    meta = ActionMeta(
        name="guardrail.complete_workflow",
        description="Record the deployment and its new endpoints on the workflow; completed.",
        idempotent=True,
    )
    Params = CompleteWorkflowParams
    Outputs = CompleteWorkflowOutputs

    def run(self, ctx: ActionContext, params: CompleteWorkflowParams) -> CompleteWorkflowOutputs:
        with ctx.session_factory() as session, session.begin():
            record = session.get(GuardrailWorkflow, params.workflow_id)
            if record is None:
                raise LookupError(f"guardrail workflow {params.workflow_id} does not exist")
            record.deployment_id = params.deployment_id
            record.deployed_endpoint_ids = list(params.deployed_endpoint_ids)
            record.current_step = WorkflowStep.FINAL_DEPLOYMENT
            record.status = WorkflowStatus.COMPLETED
            record.error = None
        return CompleteWorkflowOutputs(status=WorkflowStatus.COMPLETED)
