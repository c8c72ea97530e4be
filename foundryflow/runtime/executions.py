"""Beginning and end of an execution: start (validate params, pin spec) and finish."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy.dialects.postgresql import insert

from foundryflow.runtime import events
from foundryflow.runtime.state import (
    PARENT,
    ExecutionNotFoundError,
    first_failure,
    load_execution,
    now,
    pipeline_of,
    provisional_status,
    step_rows,
    template_context,
)
from foundryflow.spec.model import Pipeline
from foundryflow.spec.params import validate_run_params
from foundryflow.spec.templating import TemplateRenderError, render
from foundryflow.store.db import session_scope
from foundryflow.store.models import Execution, ExecutionStatus, StepRun, StepStatus

log = logging.getLogger(__name__)

__all__ = [
    "ExecutionNotFoundError",
    "FinishedExecution",
    "execution_id_for",
    "finish_execution",
    "start_execution",
]

_NAMESPACE = uuid.UUID("5b0f8e9c-3f7e-4d43-9a1e-6b3c1f0f5e21")


def execution_id_for(engine: str, run_key: str) -> UUID:
    """A stable id for one engine run, so every task of it finds the same execution
    without passing ids around (Airflow: ``dag_id/run_id``)."""
    return uuid.uuid5(_NAMESPACE, f"{engine}:{run_key}")


def start_execution(
    pipeline: Pipeline,
    raw_params: Any,
    *,
    engine: str,
    engine_run_id: str,
    execution_id: UUID | None = None,
) -> UUID:
    """Validate params and record the run; idempotent for the same engine run.

    Invalid params raise ``ParamsError`` before anything is written.
    """
    params = validate_run_params(pipeline, raw_params)
    execution_id = execution_id or execution_id_for(engine, engine_run_id)
    with session_scope() as session:
        inserted = session.execute(
            insert(Execution)
            .values(
                id=execution_id,
                pipeline=pipeline.name,
                version=pipeline.version,
                spec=pipeline.model_dump(mode="json", exclude_unset=False),
                engine=engine,
                engine_run_id=engine_run_id,
                params=params,
                status=ExecutionStatus.RUNNING,
            )
            .on_conflict_do_nothing()
            .returning(Execution.id)
        ).scalar_one_or_none()
        if inserted is None:
            return load_execution(session, execution_id).id
        session.execute(
            insert(StepRun),
            [
                {
                    "execution_id": execution_id,
                    "pipeline": pipeline.name,
                    "step_id": step.id,
                    "map_index": PARENT,
                    "status": StepStatus.PENDING,
                    "attempt": 0,
                }
                for step in pipeline.steps
            ],
        )
    events.publish(
        "execution.started",
        {"execution_id": str(execution_id), "pipeline": pipeline.name, "engine": engine},
        events.callback_topics(params),
    )
    return execution_id


def settle(execution_id: UUID, engine_failed: bool = False) -> None:
    """Bring rows in line with an engine that has finished the regular steps.

    A row still RUNNING belongs to a worker that died or was killed; a PENDING step whose
    dependencies all finished was lost by the engine, unless a failure stopped the run.
    Everything else that never ran is SKIPPED, with the reason.
    """
    with session_scope() as session:
        execution = load_execution(session, execution_id, lock=True)
        pipeline = pipeline_of(execution)
        rows = step_rows(session, execution_id)
        failed = first_failure(pipeline, rows) is not None or any(
            row.status == StepStatus.RUNNING
            for row in rows.values()  # killed mid-step
        )
        if engine_failed and not failed and execution.finished_at is None:
            # The engine ended a run none of whose steps failed (`argo stop`, a pod that never
            # started): recorded, so closing steps run later read execution.status FAILED.
            execution.error = execution.error or "the engine stopped the run before it finished"
        stopped = failed or engine_failed
        for (step_id, _), row in sorted(rows.items(), key=lambda item: item[1].id):
            step = pipeline.step(step_id)
            if row.status == StepStatus.RUNNING:
                _mark(
                    row,
                    StepStatus.FAILED,
                    "the engine ended this step before it finished "
                    "(worker lost, killed or timed out)",
                )
            elif row.status == StepStatus.PENDING and not step.is_finally:
                deps_done = all(
                    rows[(dep, PARENT)].status in (StepStatus.COMPLETED, StepStatus.SKIPPED)
                    for dep in step.depends_on
                )
                if deps_done and not stopped:
                    _mark(
                        row,
                        StepStatus.FAILED,
                        "never ran although its dependencies finished: the engine lost it",
                    )
                else:
                    _mark(row, StepStatus.SKIPPED, "not run: the run stopped before this step")


def _cancel(execution: Execution, reason: str) -> None:
    if execution.status != ExecutionStatus.CANCELLED:
        execution.status = ExecutionStatus.CANCELLED
        execution.error = f"cancelled: {reason}"


def cancel_execution(execution_id: UUID, reason: str = "cancelled by a user") -> FinishedExecution:
    """Cancel a running execution, whichever engine runs it, and clean up now.

    Marks it CANCELLED, so no regular step starts any more (the engine's remaining tasks
    become no-ops), then does what a failure does: compensations, the closing steps (a
    rollback step sees ``execution.status == 'FAILED'``), the final record. Every part is
    idempotent, so the engine's own closing tasks may run it again harmlessly.
    """
    from foundryflow.runtime.rollback import rollback
    from foundryflow.runtime.steps import run_step

    with session_scope() as session:
        execution = load_execution(session, execution_id, lock=True)
        if execution.finished_at is not None:
            return FinishedExecution(execution.status, execution.error, execution.outputs)
        _cancel(execution, reason)
        pipeline = pipeline_of(execution)
    rollback(execution_id, engine_failed=True)
    for step in pipeline.finally_steps:
        run_step(execution_id, step.id)
    return finish_execution(execution_id, engine_failed=True)


def _mark(row: StepRun, status: StepStatus, error: str) -> None:
    row.status = status
    row.error = error
    row.finished_at = row.finished_at or now()


@dataclass(frozen=True)
class FinishedExecution:
    status: ExecutionStatus
    error: str | None
    outputs: dict[str, Any] | None


def finish_execution(
    execution_id: UUID, engine_failed: bool = False, engine_message: str | None = None
) -> FinishedExecution:
    """Record the final status and outputs; idempotent once finished."""
    settle(execution_id, engine_failed)
    with session_scope() as session:
        execution = load_execution(session, execution_id, lock=True)
        if execution.finished_at is not None:
            return FinishedExecution(execution.status, execution.error, execution.outputs)
        pipeline = pipeline_of(execution)
        rows = step_rows(session, execution_id)
        status = provisional_status(execution, pipeline, rows, engine_failed)
        failed_finally = [
            row
            for (step_id, index), row in rows.items()
            if index == PARENT
            and row.status == StepStatus.FAILED
            and pipeline.step(step_id).is_finally
        ]
        if failed_finally:
            status = ExecutionStatus.FAILED
        elif execution.status == ExecutionStatus.CANCELLED:
            status = ExecutionStatus.CANCELLED
        failure = first_failure(pipeline, rows)
        if status == ExecutionStatus.FAILED:
            execution.error = (
                str(failure)
                if failure
                else (
                    f"step {failed_finally[0].step_id!r} failed: {failed_finally[0].error}"
                    if failed_finally
                    else engine_message or "the engine reported the run as failed"
                )
            )
        context = template_context(execution, pipeline, rows, final=True)
        execution.outputs = _render_outputs(pipeline, context)
        execution.status = status
        execution.finished_at = now()
        topics = events.callback_topics(execution.params)
        payload = {
            "execution_id": str(execution.id),
            "pipeline": execution.pipeline,
            "status": status.value,
            "error": execution.error or "",
        }
        finished = FinishedExecution(status, execution.error, execution.outputs)
    events.publish(f"execution.{status.value.lower()}", payload, topics)
    return finished


def _render_outputs(pipeline: Pipeline, context: dict[str, Any]) -> dict[str, Any]:
    """Each declared output on its own: one that cannot be computed (its step did not
    run) is recorded as None rather than hiding the others."""
    outputs: dict[str, Any] = {}
    for name, template in pipeline.outputs.items():
        try:
            outputs[name] = render(template, context)
        except TemplateRenderError as exc:
            log.info("output %s of %s not available: %s", name, pipeline.name, exc)
            outputs[name] = None
    return outputs
