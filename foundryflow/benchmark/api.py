"""The workflow API of the benchmark matrix (seed 003, 2.2): the queue over HTTP.

For workers that cannot reach PostgreSQL directly (another network, another language);
workers that can call :mod:`foundryflow.benchmark.queue` themselves. Every route is one
queue operation, so its guarantees carry over unchanged: a batch goes to one worker only,
and a status update is fenced on the worker that holds the claim (409 otherwise).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from foundryflow.benchmark import queue
from foundryflow.benchmark.matrix import ModelVersionNotFoundError
from foundryflow.store.catalog import BenchmarkConfig, ConfigStatus
from foundryflow.store.db import session_scope

router = APIRouter(prefix="/api/v1/workflow", tags=["benchmark matrix"])

WorkerId = Annotated[str, Field(min_length=1, max_length=queue.MAX_WORKER_ID)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GetBatchRequest(_Request):
    worker_id: WorkerId
    batch_size: int = Field(default=10, ge=1, le=1000)
    model_version_id: int | None = Field(default=None, ge=1)


class ConfigOut(BaseModel):
    id: int
    model_version_id: int
    hardware: str
    framework: str
    workload_type: str
    batch_size: int
    sequence_length: int
    priority: int
    attempts: int
    model_uri: str
    dtype: str
    claimed_by: str
    claimed_at: datetime


class GetBatchResponse(BaseModel):
    configs: list[ConfigOut]


class Completed(_Request):
    status: Literal["completed"]
    worker_id: WorkerId
    runner: str = Field(min_length=1, max_length=40)
    metrics: dict[str, Any]
    started_at: AwareDatetime
    finished_at: AwareDatetime


class Failed(_Request):
    status: Literal["failed"]
    worker_id: WorkerId
    error: str = Field(min_length=1, max_length=10_000)
    max_attempts: int = Field(default=3, ge=1, le=100)


class Released(_Request):
    """Claimed but never started (the worker is stopping); not counted as a failure."""

    status: Literal["pending"]
    worker_id: WorkerId


StatusUpdate = Annotated[Completed | Failed | Released, Field(discriminator="status")]


class StatusResponse(BaseModel):
    config_id: int
    status: ConfigStatus


class ResetStaleRequest(_Request):
    older_than_minutes: float = Field(default=120, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)


class ResetStaleResponse(BaseModel):
    reset: int


def _not_held(config_id: int, worker_id: str) -> HTTPException:
    """404 for an id that does not exist, 409 for a config this worker does not hold."""
    with session_scope() as session:
        status = session.scalar(
            select(BenchmarkConfig.status).where(BenchmarkConfig.id == config_id)
        )
    if status is None:
        return HTTPException(404, f"benchmark config {config_id} does not exist")
    return HTTPException(
        409,
        f"benchmark config {config_id} is {status.value}, not running under worker "
        f"{worker_id!r}: its lease was reset or it was never claimed by this worker",
    )


@router.post("/configs/get-batch")
def get_batch(request: GetBatchRequest) -> GetBatchResponse:
    """Claim up to ``batch_size`` pending configs (``FOR UPDATE SKIP LOCKED``)."""
    claimed = queue.claim_batch(request.worker_id, request.batch_size, request.model_version_id)
    return GetBatchResponse(
        configs=[ConfigOut.model_validate(c, from_attributes=True) for c in claimed]
    )


@router.post("/configs/{config_id}/status")
def update_status(config_id: int, update: StatusUpdate) -> StatusResponse:
    """Record the run of a claimed config: completed (with metrics), failed or released."""
    if isinstance(update, Completed):
        if update.finished_at < update.started_at:
            raise HTTPException(422, "finished_at is before started_at")
        try:
            recorded = queue.complete(
                config_id,
                update.worker_id,
                update.runner,
                update.metrics,
                update.started_at,
                update.finished_at,
            )
        except ValueError as exc:  # metrics JSON cannot hold (NaN, infinity)
            raise HTTPException(422, f"metrics: {exc}") from None
        new_status: ConfigStatus | None = ConfigStatus.COMPLETED if recorded else None
    elif isinstance(update, Failed):
        new_status = queue.fail(config_id, update.worker_id, update.error, update.max_attempts)
    else:
        released = queue.release(update.worker_id, [config_id])
        new_status = ConfigStatus.PENDING if released else None
    if new_status is None:
        raise _not_held(config_id, update.worker_id)
    return StatusResponse(config_id=config_id, status=new_status)


@router.get("/progress/{model_version_id}")
def matrix_progress(model_version_id: int, window_minutes: float = 10) -> queue.MatrixProgress:
    """Counts by status, percent done, rate and ETA of a model version's matrix."""
    if window_minutes <= 0:
        raise HTTPException(422, "window_minutes must be positive")
    try:
        report = queue.progress(model_version_id, timedelta(minutes=window_minutes))
    except ModelVersionNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    return report


@router.post("/maintenance/reset-stale")
def maintenance_reset_stale(request: ResetStaleRequest | None = None) -> ResetStaleResponse:
    """Return running configs whose heartbeat is older than the limit (2 h) to pending."""
    request = request or ResetStaleRequest()
    older_than = timedelta(minutes=request.older_than_minutes)
    return ResetStaleResponse(reset=queue.reset_stale(older_than, request.max_attempts))
