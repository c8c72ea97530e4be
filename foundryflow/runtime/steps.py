"""``run_step`` and ``fanout``: the two calls every engine task ends up making."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy.orm import object_session

from foundryflow.actions.base import Action, ActionContext, ActionOutputs
from foundryflow.actions.registry import ActionRegistry
from foundryflow.actions.registry import registry as default_registry
from foundryflow.runtime import events
from foundryflow.runtime.state import (
    PARENT,
    blocked_reason,
    load_execution,
    lock_row,
    now,
    pipeline_of,
    step_rows,
    template_context,
)
from foundryflow.spec.model import Step
from foundryflow.spec.templating import TemplateRenderError, references, render
from foundryflow.store.db import session_factory, session_scope
from foundryflow.store.models import Execution, StepRun, StepStatus

log = logging.getLogger(__name__)


class StepUsageError(ValueError):
    """The engine asked for something the spec does not allow (e.g. no index on a fan-out)."""


@dataclass(frozen=True)
class StepOutcome:
    step_id: str
    map_index: int | None
    status: StepStatus
    outputs: dict[str, Any] | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status != StepStatus.FAILED

    @classmethod
    def of(cls, row: StepRun) -> StepOutcome:
        return cls(
            row.step_id,
            None if row.map_index == PARENT else row.map_index,
            row.status,
            row.outputs,
            row.error,
        )


def _event(row: StepRun, execution: Execution, kind: str) -> None:
    events.publish(
        f"step.{kind}",
        {
            "execution_id": str(execution.id),
            "pipeline": execution.pipeline,
            "step_id": row.step_id,
            "map_index": row.map_index,
            "status": row.status.value,
            "attempt": row.attempt,
            "error": row.error or "",
        },
        events.callback_topics(execution.params),
        session=object_session(row),
    )


def _finish(row: StepRun, status: StepStatus, error: str | None = None) -> None:
    row.status = status
    row.error = error
    row.finished_at = now()


def _condition_holds(step: Step, context: dict[str, Any]) -> bool:
    return step.condition is None or bool(render(step.condition, context))


def _uses_item(step: Step) -> bool:
    return any(ref.root == "item" for ref in references(step.condition))


def _output_fields(step: Step, registry: ActionRegistry) -> list[str]:
    return list(registry.get(step.action).Outputs.model_fields)


def fanout(
    execution_id: UUID, step_id: str, registry: ActionRegistry = default_registry
) -> list[int]:
    """Render a ``foreach`` step's items and create one row per item.

    Returns the item indices the engine should map over (empty when the step is skipped).
    Idempotent: a second call returns the indices recorded by the first.
    """
    with session_scope() as session:
        execution = load_execution(session, execution_id)
        pipeline = pipeline_of(execution)
        step = pipeline.step(step_id)
        if step.foreach is None:
            raise StepUsageError(f"step {step_id!r} has no foreach; run it without an index")
        parent = lock_row(session, execution, step_id, PARENT)
        if parent.items is not None or parent.status.finished:
            return list(range(len(parent.items or [])))
        rows = step_rows(session, execution_id)
        reason = blocked_reason(execution, pipeline, step, rows)
        context = template_context(execution, pipeline, rows, final=step.is_finally)
        try:
            fields = _output_fields(step, registry)
            if reason is None and not _uses_item(step) and not _condition_holds(step, context):
                reason = f"condition is false: {step.condition}"
            items = None if reason else render(step.foreach, context)
        except (TemplateRenderError, LookupError) as exc:
            _finish(parent, StepStatus.FAILED, f"foreach: {exc}")
            _event(parent, execution, "failed")
            return []
        if reason is not None:
            _finish(parent, StepStatus.SKIPPED, reason)
            _event(parent, execution, "skipped")
            return []
        if not isinstance(items, list):
            _finish(
                parent, StepStatus.FAILED, f"foreach must yield a list, got {type(items).__name__}"
            )
            _event(parent, execution, "failed")
            return []
        parent.items = items
        parent.started_at = now()
        if not items:
            # Mapping over nothing is a success with empty lists, like ``map`` in Python.
            _finish(parent, StepStatus.COMPLETED)
            parent.outputs = {name: [] for name in fields}
        else:
            parent.status = StepStatus.RUNNING
            for index in range(len(items)):
                lock_row(session, execution, step_id, index)
        _event(parent, execution, "fanned_out")
        return list(range(len(items)))


def run_step(
    execution_id: UUID,
    step_id: str,
    map_index: int | None = None,
    registry: ActionRegistry = default_registry,
) -> StepOutcome:
    """Run one step (or one item of a fan-out step) and record what happened.

    Never raises for a failure of the step itself: the outcome says FAILED, with the
    error, and the caller (operator, CLI) turns that into the engine's failure.
    """
    prepared = _prepare(execution_id, step_id, map_index, registry)
    if isinstance(prepared, StepOutcome):
        return prepared
    action, params, ctx = prepared
    try:
        result = action.run(ctx, params)
        outputs = action.Outputs.model_validate(
            result.model_dump() if isinstance(result, ActionOutputs) else result
        ).model_dump(mode="json")
    except Exception as exc:  # the action's failure is the step's failure, recorded as such
        log.exception("step %s failed", step_id)
        return _record(execution_id, step_id, map_index, StepStatus.FAILED, None, _describe(exc))
    except BaseException as exc:  # interrupted (Ctrl-C, SIGTERM, engine timeout): record, go on
        _record(execution_id, step_id, map_index, StepStatus.FAILED, None, _describe(exc))
        raise
    return _record(execution_id, step_id, map_index, StepStatus.COMPLETED, outputs, None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid outputs: {details}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _prepare(
    execution_id: UUID, step_id: str, map_index: int | None, registry: ActionRegistry
) -> StepOutcome | tuple[Action[Any, Any], Any, ActionContext]:
    """Decide in one transaction whether the step runs; if so mark it RUNNING."""
    with session_scope() as session:
        execution = load_execution(session, execution_id)
        pipeline = pipeline_of(execution)
        try:
            step = pipeline.step(step_id)
        except KeyError as exc:
            raise StepUsageError(str(exc.args[0])) from None
        if (step.foreach is None) != (map_index is None):
            raise StepUsageError(
                f"step {step_id!r} fans out: run it with an item index"
                if step.foreach is not None
                else f"step {step_id!r} does not fan out: run it without an index"
            )
        index = PARENT if map_index is None else map_index
        if map_index is not None:
            parent = lock_row(session, execution, step_id, PARENT)
            if parent.items is None or not 0 <= map_index < len(parent.items):
                raise StepUsageError(f"step {step_id!r} has no item {map_index} (fan out first)")
        row = lock_row(session, execution, step_id, index)
        if row.status in (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.COMPENSATED):
            return StepOutcome.of(row)  # idempotent: a finished step is never run twice
        rows = step_rows(session, execution_id)
        item_args: dict[str, Any] = {}
        if map_index is not None:
            item_args = {"item": rows[(step_id, PARENT)].items[map_index], "has_item": True}  # type: ignore[index]
        context = template_context(execution, pipeline, rows, final=step.is_finally, **item_args)
        reason = blocked_reason(execution, pipeline, step, rows)
        try:
            if reason is None and not _condition_holds(step, context):
                reason = f"condition is false: {step.condition}"
            if reason is not None:
                _finish(row, StepStatus.SKIPPED, reason)
                row.outputs = {}
                _event(row, execution, "skipped")
                _close_fanout(session, execution, step_id, map_index)
                return StepOutcome.of(row)
            action_cls = registry.get(step.action)
            rendered = render(step.params, context)
            params = action_cls.Params.model_validate(rendered)
        except (TemplateRenderError, LookupError) as exc:
            return _fail_early(session, execution, row, step_id, map_index, str(exc))
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            message = f"invalid params for action {step.action!r}: {details}"
            return _fail_early(session, execution, row, step_id, map_index, message)
        row.status = StepStatus.RUNNING
        row.attempt += 1
        row.params = rendered
        row.error = None
        row.started_at = now()
        row.finished_at = None
        ctx = ActionContext(
            execution_id=execution.id,
            pipeline=execution.pipeline,
            step_id=step_id,
            attempt=row.attempt,
            map_index=map_index,
            session_factory=session_factory(),
            log=logging.getLogger(f"foundryflow.step.{step_id}"),
            publish=lambda kind, fields: events.publish(
                f"action.{kind}",
                {"execution_id": str(execution_id), "step_id": step_id, **fields},
                events.callback_topics(execution.params),
            ),
        )
        _event(row, execution, "started")
        return action_cls(), params, ctx


def _fail_early(
    session: Any,
    execution: Execution,
    row: StepRun,
    step_id: str,
    map_index: int | None,
    error: str,
) -> StepOutcome:
    """A step that fails before its action runs: nothing of the action was executed."""
    _finish(row, StepStatus.FAILED, error)
    _event(row, execution, "failed")
    _close_fanout(session, execution, step_id, map_index)
    return StepOutcome.of(row)


def _record(
    execution_id: UUID,
    step_id: str,
    map_index: int | None,
    status: StepStatus,
    outputs: dict[str, Any] | None,
    error: str | None,
) -> StepOutcome:
    with session_scope() as session:
        execution = load_execution(session, execution_id)
        row = lock_row(session, execution, step_id, PARENT if map_index is None else map_index)
        _finish(row, status, error)
        row.outputs = outputs
        _event(row, execution, status.value.lower())
        _close_fanout(session, execution, step_id, map_index)
        return StepOutcome.of(row)


def _close_fanout(session: Any, execution: Execution, step_id: str, map_index: int | None) -> None:
    """When the last item of a fan-out finishes, give the parent its status and outputs.

    Outputs are gathered per field (``{"result": [item0, item1, ...]}``) so downstream
    steps read ``steps.<id>.outputs.result`` as a list in item order.
    """
    if map_index is None:
        return
    parent = lock_row(session, execution, step_id, PARENT)
    session.flush()
    items = sorted(
        (
            row
            for (sid, idx), row in step_rows(session, execution.id).items()
            if sid == step_id and idx >= 0
        ),
        key=lambda row: row.map_index,
    )
    if not all(row.status.finished for row in items):
        return
    failed = [row for row in items if row.status == StepStatus.FAILED]
    if failed:
        _finish(
            parent,
            StepStatus.FAILED,
            f"{len(failed)} of {len(items)} items failed; first: "
            f"item {failed[0].map_index}: {failed[0].error}",
        )
    elif all(row.status == StepStatus.SKIPPED for row in items):
        _finish(parent, StepStatus.SKIPPED, "every item was skipped")
    else:
        _finish(parent, StepStatus.COMPLETED)
    fields: dict[str, list[Any]] = {}
    for row in items:
        for key, value in (row.outputs or {}).items():
            fields.setdefault(key, [None] * len(items))[row.map_index] = value
    parent.outputs = fields
    _event(parent, execution, parent.status.value.lower())
