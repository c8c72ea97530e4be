"""The HTTP API (FastAPI): executions and their progress, the benchmark-matrix workflow
routes, pipeline deployments and Prometheus metrics, for UIs, remote workers and the Airflow
plugin.

Kept out of ``plugins/`` so it can be served and tested on its own; the plugin only mounts it,
with Airflow's authentication as ``auth``: every route then needs a logged-in user (the UI's
session cookie, or a bearer JWT from the API server's ``/auth/token``), except ``/metrics``,
which Prometheus scrapes and which reveals counts only (restrict it on the network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, FastAPI, HTTPException, Query, Response, params
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select

from foundryflow.benchmark.api import router as workflow_router
from foundryflow.metrics import registry
from foundryflow.pipeline_deployment.api import router as deployments_router
from foundryflow.runtime import ExecutionNotFoundError, cancel_execution, progress
from foundryflow.store.db import session_scope
from foundryflow.store.models import Execution, ExecutionStatus
from foundryflow.ui import router as ui_router


def create_app(*, auth: Sequence[params.Depends] = ()) -> FastAPI:
    """The app; ``auth`` are dependencies every route but ``/metrics`` must pass."""
    app = FastAPI(
        title="foundryflow",
        description="Pipeline executions, whichever engine (Airflow or Argo) runs them.",
        version="1",
    )
    executions = APIRouter()
    metrics = registry()

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text format, collected from PostgreSQL at scrape time."""
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @executions.get("/api/v1/executions")
    def list_executions(
        pipeline: str | None = None,
        status: ExecutionStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        """Newest first, filtered by pipeline and status."""
        query = select(Execution).order_by(Execution.created_at.desc()).limit(limit).offset(offset)
        if pipeline:
            query = query.where(Execution.pipeline == pipeline)
        if status:
            query = query.where(Execution.status == status)
        with session_scope() as session:
            return [
                {
                    "id": str(e.id),
                    "pipeline": e.pipeline,
                    "version": e.version,
                    "engine": e.engine,
                    "engine_run_id": e.engine_run_id,
                    "status": e.status.value,
                    "error": e.error,
                    "started_at": e.started_at.isoformat(),
                    "finished_at": e.finished_at.isoformat() if e.finished_at else None,
                }
                for e in session.scalars(query)
            ]

    @executions.get("/api/v1/executions/{execution_id}/progress")
    def execution_progress(execution_id: UUID) -> dict[str, Any]:
        """Per-step status, percent, ETA, errors and rollback outcome of one execution."""
        try:
            return progress(execution_id).to_json()
        except ExecutionNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @executions.post("/api/v1/executions/{execution_id}/cancel")
    def cancel(execution_id: UUID, reason: str = "cancelled by a user") -> dict[str, Any]:
        """Cancel a running execution; its rollback and closing steps run before this answers."""
        try:
            finished = cancel_execution(execution_id, reason[:1000])
        except ExecutionNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return {"id": str(execution_id), "status": finished.status.value, "error": finished.error}

    for router in (executions, workflow_router, deployments_router, ui_router):
        app.include_router(router, dependencies=list(auth))
    return app
