"""Progress of one execution: per-step status, percent done and an ETA.

The ETA walks the remaining graph (critical path), each step costing the median duration
of its last completed runs in earlier executions of the same pipeline; a running step
costs what is left of its median. Without history for a remaining step it is unknown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text

from foundryflow.runtime.state import PARENT, load_execution, now, pipeline_of, step_rows
from foundryflow.spec.validate import topological_order
from foundryflow.store.db import session_scope
from foundryflow.store.models import StepStatus

HISTORY_RUNS = 20

_MEDIANS = text(
    """
    SELECT step_id,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM finished_at - started_at)) AS median_seconds
    FROM (
        SELECT step_id, started_at, finished_at,
               row_number() OVER (PARTITION BY step_id ORDER BY finished_at DESC) AS recent
        FROM step_runs
        WHERE pipeline = :pipeline AND map_index = -1 AND status = 'COMPLETED'
          AND execution_id <> :execution_id AND started_at IS NOT NULL
    ) history
    WHERE recent <= :runs
    GROUP BY step_id
    """
)


@dataclass(frozen=True)
class StepProgress:
    id: str
    name: str
    action: str
    status: str
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None
    items_total: int | None
    items_done: int | None
    compensation_error: str | None


@dataclass(frozen=True)
class ExecutionProgress:
    id: UUID
    pipeline: str
    version: str
    engine: str
    engine_run_id: str
    status: str
    error: str | None
    params: dict[str, Any]
    outputs: dict[str, Any] | None
    rollback_status: str | None
    rollback_error: str | None
    started_at: datetime
    finished_at: datetime | None
    percent: float
    steps_done: int
    steps_total: int
    eta_seconds: float | None
    steps: list[StepProgress]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = str(self.id)
        for item in (data, *data["steps"]):
            for key, value in item.items():
                if isinstance(value, datetime):
                    item[key] = value.isoformat()
        return data


def progress(execution_id: UUID) -> ExecutionProgress:
    with session_scope() as session:
        execution = load_execution(session, execution_id)
        pipeline = pipeline_of(execution)
        rows = step_rows(session, execution_id)
        medians = {
            step_id: float(seconds)
            for step_id, seconds in session.execute(
                _MEDIANS,
                {"pipeline": pipeline.name, "execution_id": execution_id, "runs": HISTORY_RUNS},
            )
        }
        steps: list[StepProgress] = []
        for step in pipeline.steps:
            row = rows.get((step.id, PARENT))
            items = [r for (sid, idx), r in rows.items() if sid == step.id and idx >= 0]
            steps.append(
                StepProgress(
                    id=step.id,
                    name=step.title,
                    action=step.action,
                    status=row.status.value if row else StepStatus.PENDING.value,
                    attempt=row.attempt if row else 0,
                    started_at=row.started_at if row else None,
                    finished_at=row.finished_at if row else None,
                    duration_seconds=row.duration_seconds if row else None,
                    error=row.error if row else None,
                    items_total=len(items)
                    if step.foreach is not None and row and row.items is not None
                    else None,
                    items_done=sum(r.status.finished for r in items)
                    if step.foreach is not None
                    else None,
                    compensation_error=row.compensation_error if row else None,
                )
            )
        done = sum(StepStatus(s.status).finished for s in steps)
        total = len(steps)
        eta = 0.0 if execution.finished_at else _eta(pipeline, rows, medians)
        return ExecutionProgress(
            id=execution.id,
            pipeline=execution.pipeline,
            version=execution.version,
            engine=execution.engine,
            engine_run_id=execution.engine_run_id,
            status=execution.status.value,
            error=execution.error,
            params=execution.params,
            outputs=execution.outputs,
            rollback_status=execution.rollback_status.value if execution.rollback_status else None,
            rollback_error=execution.rollback_error,
            started_at=execution.started_at,
            finished_at=execution.finished_at,
            percent=round(100.0 * done / total, 1) if total else 100.0,
            steps_done=done,
            steps_total=total,
            eta_seconds=eta,
            steps=steps,
        )


def _eta(
    pipeline: Any, rows: dict[tuple[str, int], Any], medians: dict[str, float]
) -> float | None:
    finish_at: dict[str, float] = {}
    current = now()
    for step in topological_order(pipeline.regular_steps):
        row = rows.get((step.id, PARENT))
        if row is not None and row.status.finished:
            finish_at[step.id] = 0.0
            continue
        median = medians.get(step.id)
        if median is None:
            return None
        cost = median
        if row is not None and row.status == StepStatus.RUNNING and row.started_at is not None:
            cost = max(median - (current - row.started_at).total_seconds(), 0.0)
        start = max((finish_at.get(dep, 0.0) for dep in step.depends_on), default=0.0)
        finish_at[step.id] = start + cost
    return max(finish_at.values(), default=0.0)
