"""``pipeline_deployment.deploy|update|rollback|delete``: the changing operations of seed 001.

Each validates (nothing changes on bad input), carries the change out on the cluster and
records the revision, through :mod:`foundryflow.pipeline_deployment.service`, the same
calls the REST API and the CLI make. A cluster failure fails the step; the revision that
failed stays in the audit trail.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.pipeline_deployment import service
from foundryflow.pipeline_deployment.model import CreateRequest, Resources, UpdateRequest

ACTOR = Field(default="airflow", min_length=1, max_length=250, description="Who asks.")


class ChangeOutputs(ActionOutputs):
    deployment_id: str
    revision: int
    action: str
    status: str


def _outputs(outcome: service.Outcome) -> ChangeOutputs:
    return ChangeOutputs(
        deployment_id=str(outcome.deployment_id),
        revision=outcome.revision,
        action=outcome.action.value,
        status=outcome.status.value,
    )


class DeployParams(ActionParams, CreateRequest):
    actor: str = ACTOR


class Deploy(Action[DeployParams, ChangeOutputs]):
    meta = ActionMeta(
        name="pipeline_deployment.deploy",
        description="Install a pool of pipeline runners on the nodes a selector picks.",
        timeout_seconds=900,
    )
    Params = DeployParams
    Outputs = ChangeOutputs

    def run(self, ctx: ActionContext, params: DeployParams) -> ChangeOutputs:
        request = CreateRequest.model_validate(params.model_dump(exclude={"actor"}))
        outcome = service.run(service.begin_create(request, params.actor))
        ctx.log.info("deployed %s: revision %d", params.deployment_name, outcome.revision)
        return _outputs(outcome)


class UpdateParams(ActionParams):
    deployment_id: UUID
    parameters: dict[str, Any] | None = None
    resources: Resources | None = None
    target_nodes: dict[str, str] | None = None
    replicas: int | None = Field(default=None, ge=0)
    interval_seconds: int | None = Field(default=None, ge=1, le=86400)
    actor: str = ACTOR


class Update(Action[UpdateParams, ChangeOutputs]):
    meta = ActionMeta(
        name="pipeline_deployment.update",
        description="Change a pipeline deployment (rolling update) and record the revision.",
        timeout_seconds=900,
    )
    Params = UpdateParams
    Outputs = ChangeOutputs

    def run(self, ctx: ActionContext, params: UpdateParams) -> ChangeOutputs:
        patch = params.model_dump(
            exclude={"deployment_id", "actor"}, exclude_none=True, exclude_defaults=True
        )
        if params.resources is not None:
            patch["resources"] = params.resources.model_dump(exclude_defaults=True)
        change = service.begin_update(
            params.deployment_id, UpdateRequest.model_validate(patch), params.actor
        )
        return _outputs(service.run(change))


class RollbackParams(ActionParams):
    deployment_id: UUID
    revision: int = Field(ge=1, description="The revision to return to.")
    actor: str = ACTOR


class Rollback(Action[RollbackParams, ChangeOutputs]):
    meta = ActionMeta(
        name="pipeline_deployment.rollback",
        description="Return a pipeline deployment to an earlier revision (helm rollback).",
        timeout_seconds=900,
    )
    Params = RollbackParams
    Outputs = ChangeOutputs

    def run(self, ctx: ActionContext, params: RollbackParams) -> ChangeOutputs:
        change = service.begin_rollback(params.deployment_id, params.revision, params.actor)
        return _outputs(service.run(change))


class DeleteParams(ActionParams):
    deployment_id: UUID
    actor: str = ACTOR


class Delete(Action[DeleteParams, ChangeOutputs]):
    meta = ActionMeta(
        name="pipeline_deployment.delete",
        description="Uninstall a pipeline deployment's runners; the record is kept 30 days.",
        timeout_seconds=900,
    )
    Params = DeleteParams
    Outputs = ChangeOutputs

    def run(self, ctx: ActionContext, params: DeleteParams) -> ChangeOutputs:
        change = service.begin_delete(params.deployment_id, params.actor)
        return _outputs(service.run(change))
