"""``/api/v1/pipelines/deployments``: seed 001's REST API, served by the Airflow plugin.

Validation answers in the request (422 with what to change, 404, 409); the cluster work of
a create, update, rollback or delete runs after the response (FastAPI background task), so
a client gets the seed's ``202 {"status": "deploying"}`` at once and follows the
deployment with GET. Who asks is taken from ``X-Foundryflow-Actor`` (the plugin has no
authentication of its own yet) and recorded in each revision.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Header, HTTPException, Query
from pydantic import BaseModel, Field

from foundryflow.pipeline_deployment import service
from foundryflow.pipeline_deployment.model import CreateRequest, UpdateRequest
from foundryflow.store.pipeline_deployment import DeploymentStatus

router = APIRouter(prefix="/api/v1/pipelines/deployments", tags=["pipeline deployments"])
Actor = Annotated[str, Header(alias="X-Foundryflow-Actor", min_length=1, max_length=250)]


class RollbackRequest(BaseModel):
    revision: int = Field(ge=1, description="The revision to return to.")


def _http(exc: service.DeploymentError) -> HTTPException:
    if isinstance(exc, service.DeploymentNotFound):
        return HTTPException(status_code=404, detail=str(exc))
    if isinstance(exc, service.DeploymentConflict):
        return HTTPException(status_code=409, detail=str(exc))
    return HTTPException(status_code=422, detail=str(exc))


def _accepted(change: service.Change, background: BackgroundTasks, message: str) -> dict[str, Any]:
    background.add_task(service.carry_out, change)
    status = {
        "create": DeploymentStatus.DEPLOYING,
        "delete": DeploymentStatus.DELETING,
    }.get(change.action.value, DeploymentStatus.UPDATING)
    return {
        "deployment_id": str(change.deployment_id),
        "status": status.value,
        "revision": change.revision,
        "message": message,
    }


@router.post("", status_code=202)
def deploy(
    request: CreateRequest, background: BackgroundTasks, actor: Actor = "api"
) -> dict[str, Any]:
    """Deploy a pipeline (seed: "Deploy Pipeline")."""
    try:
        change = service.begin_create(request, actor)
    except service.DeploymentError as exc:
        raise _http(exc) from None
    return _accepted(change, background, "Deployment initiated") | {
        "pipeline_name": request.pipeline_name,
        "deployment_name": request.deployment_name,
        "namespace": request.namespace,
        "target_nodes": request.target_nodes,
    }


@router.get("")
def list_deployments(
    namespace: str | None = None,
    status: DeploymentStatus | None = None,
    pipeline: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """Deployments, newest first (seed: "List Pipeline Deployments")."""
    return service.list_deployments(
        namespace=namespace, status=status, pipeline=pipeline, page=page, per_page=per_page
    )


@router.get("/{deployment_id}")
def get_deployment(deployment_id: UUID) -> dict[str, Any]:
    """One deployment with instances desired/ready/updated (seed: "Get Deployment Status")."""
    try:
        return service.get(deployment_id)
    except service.DeploymentError as exc:
        raise _http(exc) from None


@router.get("/{deployment_id}/revisions")
def get_revisions(deployment_id: UUID) -> list[dict[str, Any]]:
    """The audit trail: every change with who, when and what changed."""
    try:
        return service.revisions(deployment_id)
    except service.DeploymentError as exc:
        raise _http(exc) from None


@router.patch("/{deployment_id}", status_code=202)
def update(
    deployment_id: UUID,
    request: UpdateRequest,
    background: BackgroundTasks,
    actor: Actor = "api",
) -> dict[str, Any]:
    """Change parameters, resources, target nodes or replicas (seed: "Update Deployment")."""
    try:
        change = service.begin_update(deployment_id, request, actor)
    except service.DeploymentError as exc:
        raise _http(exc) from None
    return _accepted(change, background, "Rolling update initiated")


@router.post("/{deployment_id}/rollback", status_code=202)
def rollback(
    deployment_id: UUID,
    request: RollbackRequest,
    background: BackgroundTasks,
    actor: Actor = "api",
) -> dict[str, Any]:
    """Return to an earlier revision (helm rollback on a real cluster)."""
    try:
        change = service.begin_rollback(deployment_id, request.revision, actor)
    except service.DeploymentError as exc:
        raise _http(exc) from None
    return _accepted(change, background, f"Rollback to revision {request.revision} initiated")


@router.delete("/{deployment_id}", status_code=202)
def delete(
    deployment_id: UUID, background: BackgroundTasks, actor: Actor = "api"
) -> dict[str, Any]:
    """Uninstall the runners; the record is purged 30 days later (seed: "Delete Deployment")."""
    try:
        change = service.begin_delete(deployment_id, actor)
    except service.DeploymentError as exc:
        raise _http(exc) from None
    return _accepted(change, background, "Deployment removal initiated")
