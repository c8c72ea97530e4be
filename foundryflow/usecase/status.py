"""Use-case status: the deployment records follow the pipeline run (seed 004, C.9).

The seed has the use-case service listen to pipeline events and patch its rows. Here the
listener (:func:`on_event`, an ``foundryflow.event_listeners`` entry point, so it runs on
either engine in the process that recorded the step) re-derives the whole record from the
run's ``step_runs`` each time: an event that is lost or arrives twice cannot leave a
record wrong, and :func:`sync_deployment` is also what ``usecase status`` calls.

Step status to component status, as the seed maps it (ours has no TIMEOUT: a step that
times out is FAILED), plus our two extra step states::

    COMPLETED -> RUNNING   FAILED, TIMEOUT -> FAILED   RUNNING -> DEPLOYING
    PENDING   -> PENDING   SKIPPED -> SKIPPED          COMPENSATED -> STOPPED
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from foundryflow.runtime.state import PARENT
from foundryflow.store.db import session_scope
from foundryflow.store.models import Execution, ExecutionStatus, StepRun
from foundryflow.store.usecase import ComponentStatus, DeploymentStatus, UseCaseDeployment

log = logging.getLogger(__name__)

STEP_STATUS_MAP: dict[str, ComponentStatus] = {
    "COMPLETED": ComponentStatus.RUNNING,
    "FAILED": ComponentStatus.FAILED,
    "TIMEOUT": ComponentStatus.FAILED,
    "RUNNING": ComponentStatus.DEPLOYING,
    "PENDING": ComponentStatus.PENDING,
    "SKIPPED": ComponentStatus.SKIPPED,
    "COMPENSATED": ComponentStatus.STOPPED,
}
PIPELINE_PREFIX = "usecase-"


def deployment_status(execution: Execution, rows: dict[str, StepRun]) -> DeploymentStatus:
    if execution.status is ExecutionStatus.COMPLETED:
        return DeploymentStatus.RUNNING
    if execution.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        return DeploymentStatus.FAILED
    started = any(row.status.value != "PENDING" for row in rows.values())
    return DeploymentStatus.DEPLOYING if started else DeploymentStatus.PENDING


def sync_deployment(session: Session, deployment: UseCaseDeployment) -> None:
    """Bring ``deployment`` and its components in line with its run (caller commits)."""
    if deployment.execution_id is None:
        return
    execution = session.get(Execution, deployment.execution_id)
    if execution is None:
        return
    rows = {
        row.step_id: row
        for row in session.scalars(
            select(StepRun).where(StepRun.execution_id == execution.id, StepRun.map_index == PARENT)
        )
    }
    for component in deployment.components:
        row = rows.get(component.name)
        if row is None:  # left out of this run (an optional component not selected)
            continue
        if component.status is ComponentStatus.STOPPED and deployment.status in (
            DeploymentStatus.STOPPING,
            DeploymentStatus.STOPPED,
        ):
            continue  # uninstalled by stop: the run's COMPLETED row is history
        component.status = STEP_STATUS_MAP[row.status.value]
        params: dict[str, Any] = row.params or {}
        outputs: dict[str, Any] = row.outputs or {}
        # the rendered params name the release even when the install failed half-way
        component.release_name = outputs.get("release_name") or params.get("release_name")
        component.namespace = outputs.get("namespace") or params.get("namespace")
        component.endpoint_url = outputs.get("endpoint_url") or None
        component.services = list(outputs.get("services") or [])
        component.job_id = outputs.get("job_id")
        if outputs.get("selected"):
            component.selected = outputs["selected"]
        component.error = row.error if component.status is ComponentStatus.FAILED else None
    if deployment.status in (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED):
        return
    deployment.status = deployment_status(execution, rows)
    deployment.error = execution.error if deployment.status is DeploymentStatus.FAILED else None


def sync_execution(execution_id: UUID) -> UseCaseDeployment | None:
    """Sync the deployment a run belongs to, if it is a use-case run."""
    with session_scope() as session:
        deployment = session.scalars(
            select(UseCaseDeployment)
            .where(UseCaseDeployment.execution_id == execution_id)
            .with_for_update()
        ).one_or_none()
        if deployment is not None:
            sync_deployment(session, deployment)
        return deployment


def on_event(event_type: str, fields: dict[str, Any]) -> None:
    """The ``foundryflow.event_listeners`` entry point: react to runs of use-case pipelines.

    Step and execution events name their pipeline, so other pipelines cost nothing; the
    rollback events do not, and are checked by execution id.
    """
    pipeline = fields.get("pipeline")
    if pipeline is not None and not str(pipeline).startswith(PIPELINE_PREFIX):
        return
    if not event_type.startswith(("step.", "execution.")):
        return
    try:
        execution_id = UUID(str(fields.get("execution_id")))
    except ValueError:
        return
    sync_execution(execution_id)
