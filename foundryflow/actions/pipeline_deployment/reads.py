"""``pipeline_deployment.get|list|purge``: reading deployments, and purging deleted ones."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.pipeline_deployment import service
from foundryflow.store.pipeline_deployment import DeploymentStatus


class GetParams(ActionParams):
    deployment_id: UUID


class GetOutputs(ActionOutputs):
    deployment: dict[str, Any]


class GetDeployment(Action[GetParams, GetOutputs]):
    meta = ActionMeta(
        name="pipeline_deployment.get",
        description="A pipeline deployment with its instances (desired, ready, updated).",
        idempotent=True,
    )
    Params = GetParams
    Outputs = GetOutputs

    def run(self, ctx: ActionContext, params: GetParams) -> GetOutputs:
        return GetOutputs(deployment=service.get(params.deployment_id))


class ListParams(ActionParams):
    namespace: str | None = None
    status: DeploymentStatus | None = None
    pipeline: str | None = None
    page: int = Field(default=1, ge=1)
    per_page: int = Field(default=20, ge=1, le=200)


class ListOutputs(ActionOutputs):
    deployments: list[dict[str, Any]]
    total: int
    page: int
    per_page: int


class ListDeployments(Action[ListParams, ListOutputs]):
    meta = ActionMeta(
        name="pipeline_deployment.list",
        description="Pipeline deployments, filtered by namespace, status and pipeline.",
        idempotent=True,
    )
    Params = ListParams
    Outputs = ListOutputs

    def run(self, ctx: ActionContext, params: ListParams) -> ListOutputs:
        return ListOutputs.model_validate(service.list_deployments(**params.model_dump()))


class PurgeParams(ActionParams):
    older_than_days: int | None = Field(default=None, ge=1)


class PurgeOutputs(ActionOutputs):
    purged: int


class PurgeDeleted(Action[PurgeParams, PurgeOutputs]):
    meta = ActionMeta(
        name="pipeline_deployment.purge",
        description="Remove deployments deleted more than 30 days ago, with their history.",
        idempotent=True,
    )
    Params = PurgeParams
    Outputs = PurgeOutputs

    def run(self, ctx: ActionContext, params: PurgeParams) -> PurgeOutputs:
        purged = service.purge(params.older_than_days)
        ctx.log.info("purged %d deleted pipeline deployment(s)", purged)
        return PurgeOutputs(purged=purged)
