"""Reading and classifying the rows of one execution.

Kept apart from the functions that change state so that ``run_step``, rollback, finish
and progress all interpret "failed", "done" and "blocked" the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from foundryflow.spec.model import Pipeline, Step
from foundryflow.store.models import Execution, ExecutionStatus, StepRun, StepStatus

PARENT = -1
"""``map_index`` of a step's own row (fan-out items have 0..n-1)."""


class ExecutionNotFoundError(LookupError):
    pass


def now() -> datetime:
    return datetime.now(UTC)


def load_execution(session: Session, execution_id: UUID, lock: bool = False) -> Execution:
    query = select(Execution).where(Execution.id == execution_id)
    if lock:
        query = query.with_for_update()
    execution = session.scalars(query).one_or_none()
    if execution is None:
        raise ExecutionNotFoundError(
            f"execution {execution_id} not found: it was never started "
            "(the start task failed or the id is wrong)"
        )
    return execution


def pipeline_of(execution: Execution) -> Pipeline:
    """The spec pinned when the run began, so edits to the YAML never change a live run."""
    return Pipeline.model_validate(execution.spec)


def step_rows(session: Session, execution_id: UUID) -> dict[tuple[str, int], StepRun]:
    rows = session.scalars(select(StepRun).where(StepRun.execution_id == execution_id))
    return {(row.step_id, row.map_index): row for row in rows}


def lock_row(session: Session, execution: Execution, step_id: str, map_index: int) -> StepRun:
    """Get-or-create one step row and lock it until the transaction ends."""
    session.execute(
        insert(StepRun)
        .values(
            execution_id=execution.id,
            pipeline=execution.pipeline,
            step_id=step_id,
            map_index=map_index,
            status=StepStatus.PENDING,
            attempt=0,
        )
        .on_conflict_do_nothing(index_elements=["execution_id", "step_id", "map_index"])
    )
    return session.scalars(
        select(StepRun)
        .where(
            StepRun.execution_id == execution.id,
            StepRun.step_id == step_id,
            StepRun.map_index == map_index,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


@dataclass(frozen=True)
class Failure:
    step_id: str
    error: str

    def __str__(self) -> str:
        return f"step {self.step_id!r} failed: {self.error}"


def first_failure(pipeline: Pipeline, rows: dict[tuple[str, int], StepRun]) -> Failure | None:
    """The earliest failed regular step, which is what a user wants to read first."""
    regular = {step.id for step in pipeline.regular_steps}
    failed = [
        row
        for (step_id, index), row in rows.items()
        if step_id in regular and index == PARENT and row.status == StepStatus.FAILED
    ]
    if not failed:
        return None
    row = min(failed, key=lambda r: (r.finished_at or now(), r.id))
    return Failure(row.step_id, row.error or "no error recorded")


def provisional_status(
    execution: Execution,
    pipeline: Pipeline,
    rows: dict[tuple[str, int], StepRun],
    engine_failed: bool = False,
) -> ExecutionStatus:
    """What finally steps see as ``execution.status`` once the regular steps are over.

    A cancelled run, or one the engine stopped (``execution.error`` recorded by ``settle``),
    reads as FAILED here, so the steps that clean up after a failure (a rollback step's
    ``execution.status == 'FAILED'``) clean up after those too.
    """
    stopped = execution.status == ExecutionStatus.CANCELLED or execution.error is not None
    if engine_failed or stopped or first_failure(pipeline, rows) is not None:
        return ExecutionStatus.FAILED
    return ExecutionStatus.COMPLETED


def blocked_reason(
    execution: Execution, pipeline: Pipeline, step: Step, rows: dict[tuple[str, int], StepRun]
) -> str | None:
    """Why a regular step must not start although the engine launched it.

    Nothing new starts in a cancelled execution. With ``on_failure: fail`` no new work
    starts after a failure, on either engine: Argo stops scheduling by itself, Airflow
    would go on with independent branches.
    """
    if step.is_finally:
        return None
    if execution.status == ExecutionStatus.CANCELLED:
        return "not run: the execution was cancelled"
    if pipeline.settings.on_failure != "fail":
        return None
    # The step's own earlier failure does not block it: that is an engine retry.
    others = {key: row for key, row in rows.items() if key[0] != step.id}
    failure = first_failure(pipeline, others)
    return f"not run: {failure} (on_failure: fail)" if failure else None


def template_context(
    execution: Execution,
    pipeline: Pipeline,
    rows: dict[tuple[str, int], StepRun],
    *,
    final: bool,
    item: Any = None,
    has_item: bool = False,
) -> dict[str, Any]:
    """Variables templates may read; a step's outputs appear only once it completed."""
    steps: dict[str, Any] = {}
    for (step_id, index), row in rows.items():
        if index != PARENT:
            continue
        entry: dict[str, Any] = {"status": row.status.value}
        if row.status in (StepStatus.COMPLETED, StepStatus.COMPENSATED) and row.outputs is not None:
            entry["outputs"] = row.outputs
        steps[step_id] = entry
    failure = first_failure(pipeline, rows)
    status = provisional_status(execution, pipeline, rows) if final else execution.status
    context: dict[str, Any] = {
        "params": execution.params,
        "steps": steps,
        "execution": {
            "id": str(execution.id),
            "pipeline": execution.pipeline,
            "version": execution.version,
            "engine": execution.engine,
            "run_id": execution.engine_run_id,
            "started_at": execution.started_at.isoformat(),
            "status": status.value,
            "error_message": str(failure) if failure else (execution.error or ""),
        },
    }
    if has_item:
        context["item"] = item
    return context
