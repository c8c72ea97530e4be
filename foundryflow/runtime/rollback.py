"""Rollback: undo, in reverse order of completion, what the succeeded steps did.

Compensation is best effort by design: one compensation that fails is recorded and the
others still run, because leaving *more* resources behind is worse than reporting one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from uuid import UUID

from foundryflow.actions.base import ActionContext
from foundryflow.actions.registry import ActionRegistry
from foundryflow.actions.registry import registry as default_registry
from foundryflow.runtime import events
from foundryflow.runtime.executions import settle
from foundryflow.runtime.state import (
    PARENT,
    load_execution,
    pipeline_of,
    provisional_status,
    step_rows,
)
from foundryflow.store.db import session_factory, session_scope
from foundryflow.store.models import ExecutionStatus, RollbackStatus, StepRun, StepStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackOutcome:
    needed: bool
    status: RollbackStatus | None
    compensated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def rollback(
    execution_id: UUID, engine_failed: bool = False, registry: ActionRegistry = default_registry
) -> RollbackOutcome:
    """Compensate the completed steps of a failed execution; a no-op if nothing failed."""
    settle(execution_id, engine_failed)
    with session_scope() as session:
        execution = load_execution(session, execution_id, lock=True)
        pipeline = pipeline_of(execution)
        rows = step_rows(session, execution_id)
        if provisional_status(execution, pipeline, rows, engine_failed) != ExecutionStatus.FAILED:
            return RollbackOutcome(needed=False, status=None)
        if execution.rollback_status == RollbackStatus.COMPLETED:
            return RollbackOutcome(needed=True, status=RollbackStatus.COMPLETED)
        execution.rollback_status = RollbackStatus.RUNNING
        regular = {step.id: step for step in pipeline.regular_steps}
        # Fan-out steps are undone item by item; their parent row only aggregates.
        fanned = {sid for (sid, idx) in rows if idx >= 0}
        todo = sorted(
            (
                row
                for (sid, idx), row in rows.items()
                if sid in regular
                and row.status == StepStatus.COMPLETED
                and (idx >= 0 or sid not in fanned)
            ),
            key=lambda row: (row.finished_at, row.id),
            reverse=True,
        )
        todo_ids = [row.id for row in todo]
        topics = events.callback_topics(execution.params)
    events.publish("execution.rollback_started", {"execution_id": str(execution_id)}, topics)

    compensated: list[str] = []
    errors: list[str] = []
    for row_id in todo_ids:
        label, error = _compensate_one(execution_id, row_id, registry)
        if error is None:
            if label:
                compensated.append(label)
        else:
            errors.append(f"{label}: {error}")

    status = RollbackStatus.FAILED if errors else RollbackStatus.COMPLETED
    with session_scope() as session:
        execution = load_execution(session, execution_id, lock=True)
        execution.rollback_status = status
        execution.rollback_error = "; ".join(errors) or None
        rows = step_rows(session, execution_id)
        for (sid, idx), row in rows.items():
            items = [r for (s, i), r in rows.items() if s == sid and i >= 0]
            if idx == PARENT and items and all(r.status == StepStatus.COMPENSATED for r in items):
                row.status = StepStatus.COMPENSATED
    events.publish(
        "execution.rollback_" + status.value.lower(),
        {"execution_id": str(execution_id), "compensated": compensated, "errors": errors},
        topics,
    )
    return RollbackOutcome(needed=True, status=status, compensated=compensated, errors=errors)


def _compensate_one(
    execution_id: UUID, row_id: int, registry: ActionRegistry
) -> tuple[str, str | None]:
    """Compensate one step row in its own transaction; ("", None) if nothing to undo."""
    with session_scope() as session:
        row = session.get(StepRun, row_id, with_for_update=True)
        assert row is not None
        execution = load_execution(session, execution_id)
        step = pipeline_of(execution).step(row.step_id)
        label = row.step_id if row.map_index == PARENT else f"{row.step_id}[{row.map_index}]"
        action_cls = registry.get(step.action)
        if not action_cls.can_compensate():
            return "", None
        ctx = ActionContext(
            execution_id=execution_id,
            pipeline=execution.pipeline,
            step_id=row.step_id,
            attempt=row.attempt,
            map_index=None if row.map_index == PARENT else row.map_index,
            session_factory=session_factory(),
            log=logging.getLogger(f"foundryflow.compensate.{row.step_id}"),
            publish=lambda kind, fields: None,
        )
        try:
            action_cls().compensate(
                ctx,
                action_cls.Params.model_validate(row.params or {}),
                action_cls.Outputs.model_validate(row.outputs or {}),
            )
        except Exception as exc:  # recorded on the row; the other compensations still run
            log.exception("compensation of %s failed", label)
            row.compensation_error = f"{type(exc).__name__}: {exc}"
            return label, row.compensation_error
        row.status = StepStatus.COMPENSATED
        row.compensation_error = None
        return label, None
