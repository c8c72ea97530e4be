"""The shared step runtime against real PostgreSQL and Redis, without any engine."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from foundryflow.runtime import (
    ExecutionNotFoundError,
    cancel_execution,
    fanout,
    finish_execution,
    progress,
    rollback,
    run_step,
    start_execution,
)
from foundryflow.runtime.steps import StepUsageError
from foundryflow.spec.loader import PipelineCatalog, parse_pipeline
from foundryflow.spec.model import Pipeline
from foundryflow.spec.params import ParamsError
from foundryflow.store.db import session_scope
from foundryflow.store.models import Execution, StepRun, StepStatus

RESOURCE_LOG = "foundryflow-test:resource-log:{}"


def pipeline(steps: list[dict[str, Any]], **extra: Any) -> Pipeline:
    spec = {"name": f"rt-{uuid.uuid4().hex[:8]}", "steps": steps, **extra}
    return parse_pipeline(spec, "test")


def start(p: Pipeline, params: dict[str, Any] | None = None) -> uuid.UUID:
    return start_execution(p, params or {}, engine="local", engine_run_id=uuid.uuid4().hex)


def statuses(execution_id: uuid.UUID) -> dict[str, str]:
    return {s.id: s.status for s in progress(execution_id).steps}


LINEAR = [
    {"id": "a", "action": "test.add", "params": {"a": "{{ params.n }}", "b": 1}},
    {
        "id": "b",
        "action": "test.add",
        "depends_on": ["a"],
        "params": {"a": "{{ steps.a.outputs.total }}"},
    },
]
N_PARAM = [{"name": "n", "type": "integer", "required": True}]


def test_steps_run_and_outputs_flow_downstream() -> None:
    p = pipeline(LINEAR, parameters=N_PARAM, outputs={"result": "{{ steps.b.outputs.total }}"})
    execution = start(p, {"n": 41})
    assert run_step(execution, "a").outputs == {"total": 42}
    assert run_step(execution, "b").outputs == {"total": 42}
    finished = finish_execution(execution)
    assert finished.status == "COMPLETED" and finished.outputs == {"result": 42}
    report = progress(execution)
    assert report.percent == 100.0 and report.eta_seconds == 0.0
    with session_scope() as session:
        row = session.scalars(
            select(StepRun).where(StepRun.execution_id == execution, StepRun.step_id == "b")
        ).one()
        assert row.params == {"a": 42} and row.attempt == 1


def test_completed_step_is_never_run_twice(redis_client: Any) -> None:
    p = pipeline([{"id": "make", "action": "test.resource", "params": {"name": "once"}}])
    execution = start(p)
    first = run_step(execution, "make")
    second = run_step(execution, "make")
    assert first == second and first.status == StepStatus.COMPLETED
    assert redis_client.lrange(RESOURCE_LOG.format(execution), 0, -1) == ["create once"]


def test_failed_step_records_error_and_can_be_retried() -> None:
    p = pipeline([{"id": "boom", "action": "test.fail", "params": {"message": "disk full"}}])
    execution = start(p)
    outcome = run_step(execution, "boom")
    assert outcome.status == StepStatus.FAILED
    assert outcome.error == "RuntimeError: disk full"
    again = run_step(execution, "boom")
    assert again.status == StepStatus.FAILED
    assert progress(execution).steps[0].attempt == 2


def test_condition_false_skips_and_dependents_use_default() -> None:
    p = pipeline(
        [
            {
                "id": "maybe",
                "action": "test.add",
                "condition": "{{ params.go }}",
                "params": {"a": 1},
            },
            {
                "id": "after",
                "action": "test.echo",
                "depends_on": ["maybe"],
                "params": {"value": "{{ steps.maybe.outputs.total | default('none') }}"},
            },
        ],
        parameters=[{"name": "go", "type": "boolean", "default": False}],
    )
    execution = start(p)
    skipped = run_step(execution, "maybe")
    assert skipped.status == StepStatus.SKIPPED and "condition is false" in (skipped.error or "")
    assert run_step(execution, "after").outputs == {"value": "none"}
    assert finish_execution(execution).status == "COMPLETED"


def test_invalid_params_fail_the_step_before_the_action_runs(redis_client: Any) -> None:
    p = pipeline(
        [{"id": "make", "action": "test.resource", "params": {"name": "{{ params.what }}"}}],
        parameters=[{"name": "what", "type": "json", "required": True}],
    )
    execution = start(p, {"what": {"not": "a string"}})
    outcome = run_step(execution, "make")
    assert outcome.status == StepStatus.FAILED
    assert (
        outcome.error
        == "invalid params for action 'test.resource': name: Input should be a valid string"
    )
    assert redis_client.llen(RESOURCE_LOG.format(execution)) == 0  # the action never ran
    assert progress(execution).steps[0].attempt == 0


def test_template_error_at_run_time_fails_the_step_clearly() -> None:
    p = pipeline(
        [{"id": "a", "action": "test.echo", "params": {"value": "{{ params.data.missing }}"}}],
        parameters=[{"name": "data", "type": "object", "default": {}}],
    )
    outcome = run_step(start(p), "a")
    assert outcome.status == StepStatus.FAILED
    assert "has no attribute 'missing'" in (outcome.error or "")


def test_unimplemented_action_fails_the_step_with_that_message() -> None:
    spec = {"name": "rt-broken", "steps": [{"id": "a", "action": "test.broken"}]}
    p = parse_pipeline(spec, "test", require_actions=False)
    outcome = run_step(start(p), "a")
    assert outcome.status == StepStatus.FAILED
    assert "registered" in (outcome.error or "") and "not implemented" in (outcome.error or "")


def test_on_failure_fail_stops_new_work() -> None:
    p = pipeline(
        [
            {"id": "boom", "action": "test.fail", "params": {}},
            {"id": "independent", "action": "test.add", "params": {"a": 1}},
        ]
    )
    execution = start(p)
    run_step(execution, "boom")
    blocked = run_step(execution, "independent")
    assert blocked.status == StepStatus.SKIPPED
    assert blocked.error == "not run: step 'boom' failed: RuntimeError: boom (on_failure: fail)"
    finished = finish_execution(execution)
    assert (
        finished.status == "FAILED" and finished.error == "step 'boom' failed: RuntimeError: boom"
    )


def test_on_failure_continue_keeps_going_but_reports_failure() -> None:
    p = pipeline(
        [
            {"id": "boom", "action": "test.fail", "params": {}},
            {
                "id": "after",
                "action": "test.echo",
                "depends_on": ["boom"],
                "params": {"value": "{{ steps.boom.status }}"},
            },
        ],
        settings={"on_failure": "continue"},
    )
    execution = start(p)
    run_step(execution, "boom")
    assert run_step(execution, "after").outputs == {"value": "FAILED"}
    assert finish_execution(execution).status == "FAILED"


def test_fanout_runs_per_item_and_gathers_outputs_in_order() -> None:
    p = pipeline(
        [
            {
                "id": "sq",
                "action": "test.add",
                "foreach": "{{ params.xs }}",
                "params": {"a": "{{ item * item }}"},
            },
            {
                "id": "sum",
                "action": "test.echo",
                "depends_on": ["sq"],
                "params": {"value": "{{ steps.sq.outputs.total | sum }}"},
            },
        ],
        parameters=[{"name": "xs", "type": "array", "required": True}],
    )
    execution = start(p, {"xs": [3, 1, 2]})
    assert fanout(execution, "sq") == [0, 1, 2]
    assert fanout(execution, "sq") == [0, 1, 2]  # idempotent
    with pytest.raises(StepUsageError, match="fans out: run it with an item index"):
        run_step(execution, "sq")
    with pytest.raises(StepUsageError, match="has no item 7"):
        run_step(execution, "sq", 7)
    for index in (2, 0):
        run_step(execution, "sq", index)
    assert statuses(execution)["sq"] == "RUNNING"
    assert progress(execution).steps[0].items_done == 2
    run_step(execution, "sq", 1)
    assert statuses(execution)["sq"] == "COMPLETED"
    assert run_step(execution, "sum").outputs == {"value": 14}


def test_fanout_partial_failure_is_failure() -> None:
    p = pipeline(
        [
            {
                "id": "each",
                "action": "test.fail",
                "foreach": [1, 2],
                "condition": "{{ item == 2 }}",
                "params": {"message": "item {{ item }} broke"},
            }
        ]
    )
    execution = start(p)
    fanout(execution, "each")
    assert run_step(execution, "each", 0).status == StepStatus.SKIPPED
    assert run_step(execution, "each", 1).status == StepStatus.FAILED
    report = progress(execution)
    assert report.steps[0].status == "FAILED"
    assert report.steps[0].error == "1 of 2 items failed; first: item 1: RuntimeError: item 2 broke"


def test_empty_fanout_completes_with_empty_lists() -> None:
    p = pipeline(
        [{"id": "each", "action": "test.add", "foreach": "{{ [] }}", "params": {"a": "{{ item }}"}}]
    )
    execution = start(p)
    assert fanout(execution, "each") == []
    assert progress(execution).steps[0].status == "COMPLETED"


def test_foreach_must_yield_a_list() -> None:
    p = pipeline(
        [{"id": "each", "action": "test.add", "foreach": "{{ 'abc' }}", "params": {"a": 1}}]
    )
    execution = start(p)
    assert fanout(execution, "each") == []
    step = progress(execution).steps[0]
    assert step.status == "FAILED" and step.error == "foreach must yield a list, got str"


ROLLBACK_STEPS = [
    {"id": "a", "action": "test.resource", "params": {"name": "a"}},
    {
        "id": "b",
        "action": "test.resource",
        "depends_on": ["a"],
        "params": {"name": "b", "fail_compensation": "{{ params.stuck }}"},
    },
    {"id": "c", "action": "test.resource", "depends_on": ["b"], "params": {"name": "c"}},
    {
        "id": "boom",
        "action": "test.fail",
        "depends_on": ["c"],
        "params": {"message": "quota exceeded"},
    },
    {
        "id": "undo",
        "action": "test.echo",
        "condition": "{{ execution.status == 'FAILED' }}",
        "params": {"value": "{{ execution.error_message }}"},
    },
]


def test_rollback_compensates_in_reverse_order(redis_client: Any) -> None:
    p = pipeline(
        ROLLBACK_STEPS,
        settings={"on_failure": "rollback"},
        parameters=[{"name": "stuck", "type": "boolean", "default": False}],
    )
    execution = start(p)
    for step in ("a", "b", "c", "boom"):
        run_step(execution, step)
    outcome = rollback(execution)
    assert outcome.needed and outcome.status == "COMPLETED"
    assert outcome.compensated == ["c", "b", "a"]
    assert redis_client.lrange(RESOURCE_LOG.format(execution), 0, -1) == [
        "create a",
        "create b",
        "create c",
        "delete c",
        "delete b",
        "delete a",
    ]
    assert redis_client.keys(f"foundryflow-test:resource:{execution}:*") == []
    assert rollback(execution).status == "COMPLETED"  # idempotent: nothing compensated twice
    assert redis_client.llen(RESOURCE_LOG.format(execution)) == 6
    assert run_step(execution, "undo").outputs == {
        "value": "step 'boom' failed: RuntimeError: quota exceeded"
    }
    finished = finish_execution(execution)
    assert finished.status == "FAILED"
    assert statuses(execution) == {
        "a": "COMPENSATED",
        "b": "COMPENSATED",
        "c": "COMPENSATED",
        "boom": "FAILED",
        "undo": "COMPLETED",
    }


def test_failed_compensation_is_recorded_and_the_others_still_run(redis_client: Any) -> None:
    p = pipeline(
        ROLLBACK_STEPS,
        settings={"on_failure": "rollback"},
        parameters=[{"name": "stuck", "type": "boolean", "default": False}],
    )
    execution = start(p, {"stuck": True})
    for step in ("a", "b", "c", "boom"):
        run_step(execution, step)
    outcome = rollback(execution)
    assert outcome.status == "FAILED"
    assert outcome.errors == ["b: RuntimeError: cannot delete b"]
    assert outcome.compensated == ["c", "a"]
    report = progress(execution)
    assert report.rollback_status == "FAILED" and "cannot delete b" in (report.rollback_error or "")
    assert {s.id: s.compensation_error for s in report.steps}[
        "b"
    ] == "RuntimeError: cannot delete b"


def test_rollback_is_a_no_op_when_nothing_failed() -> None:
    p = pipeline(ROLLBACK_STEPS[:1], settings={"on_failure": "rollback"})
    execution = start(p)
    run_step(execution, "a")
    assert rollback(execution).needed is False


def test_finish_marks_lost_and_unrun_steps() -> None:
    p = pipeline(LINEAR, parameters=N_PARAM)
    execution = start(p, {"n": 1})
    with session_scope() as session:  # a worker died mid-step: the row is stuck RUNNING
        session.execute(
            update(StepRun)
            .where(StepRun.execution_id == execution, StepRun.step_id == "a")
            .values(status=StepStatus.RUNNING)
        )
    finished = finish_execution(execution, engine_failed=True)
    assert finished.status == "FAILED"
    report = progress(execution)
    a, b = report.steps
    assert a.status == "FAILED" and "worker lost, killed or timed out" in (a.error or "")
    assert b.status == "SKIPPED" and b.error == "not run: the run stopped before this step"
    assert finish_execution(execution) == finished  # idempotent


def test_engine_failure_without_step_failure_is_reported() -> None:
    p = pipeline(LINEAR, parameters=N_PARAM)
    execution = start(p, {"n": 1})
    finished = finish_execution(
        execution, engine_failed=True, engine_message="the engine reported Error"
    )
    assert finished.status == "FAILED" and finished.error == "the engine reported Error"


def test_step_lost_by_the_engine_is_a_failure() -> None:
    p = pipeline(LINEAR, parameters=N_PARAM)
    execution = start(p, {"n": 1})
    run_step(execution, "a")
    finished = finish_execution(execution)  # b never ran although a finished
    assert finished.status == "FAILED"
    assert "never ran although its dependencies finished" in (finished.error or "")


def test_bad_params_write_nothing() -> None:
    p = pipeline(LINEAR, parameters=N_PARAM)
    with session_scope() as session:
        before = session.scalar(select(func.count()).select_from(Execution))
    with pytest.raises(ParamsError, match="n: Input should be a valid integer"):
        start(p, {"n": "many"})
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Execution)) == before


def test_start_is_idempotent_per_engine_run() -> None:
    p = pipeline(LINEAR, parameters=N_PARAM)
    first = start_execution(p, {"n": 1}, engine="airflow", engine_run_id="dag/run-1")
    again = start_execution(p, {"n": 1}, engine="airflow", engine_run_id="dag/run-1")
    assert first == again


def test_unknown_execution_and_step() -> None:
    with pytest.raises(ExecutionNotFoundError, match="not found"):
        run_step(uuid.uuid4(), "a")
    execution = start(pipeline(LINEAR, parameters=N_PARAM), {"n": 1})
    with pytest.raises(StepUsageError, match="has no step 'zz'"):
        run_step(execution, "zz")


def test_eta_is_the_critical_path_of_median_durations() -> None:
    p = pipeline(
        [
            {"id": "a", "action": "test.sleep", "params": {"seconds": 0}},
            {"id": "b", "action": "test.sleep", "depends_on": ["a"], "params": {"seconds": 0}},
            {"id": "c", "action": "test.sleep", "depends_on": ["a"], "params": {"seconds": 0}},
        ]
    )
    durations = {"a": [10, 30, 20], "b": [5, 5, 100], "c": [40, 50, 60]}
    for run in range(3):
        execution = start(p)
        for step in ("a", "b", "c"):
            run_step(execution, step)
        with session_scope() as session:
            for step, seconds in durations.items():
                row = session.scalars(
                    select(StepRun).where(
                        StepRun.execution_id == execution, StepRun.step_id == step
                    )
                ).one()
                row.finished_at = row.started_at + timedelta(seconds=seconds[run])  # type: ignore[operator]
        finish_execution(execution)
    fresh = start(p)
    assert progress(fresh).eta_seconds == pytest.approx(20 + 50)  # a, then the slower branch c
    run_step(fresh, "a")
    assert progress(fresh).eta_seconds == pytest.approx(50)
    assert (
        progress(start(pipeline([{"id": "new", "action": "test.sleep", "params": {}}]))).eta_seconds
        is None
    )


def test_events_reach_the_callback_topic(redis_client: Any) -> None:
    p = pipeline(LINEAR, parameters=[*N_PARAM, {"name": "callback_topics", "type": "json"}])
    topic = f"ui:workflow-{uuid.uuid4().hex}"
    execution = start(p, {"n": 1, "callback_topics": [topic]})
    run_step(execution, "a")
    run_step(execution, "b")
    finish_execution(execution)
    events = [fields for _, fields in redis_client.xrange(topic)]
    assert [e["type"] for e in events] == [
        "execution.started",
        "step.started",
        "step.completed",
        "step.started",
        "step.completed",
        "execution.completed",
    ]
    assert all(e["execution_id"] == str(execution) for e in events)
    assert events[2]["step_id"] == "a" and events[2]["status"] == "COMPLETED"
    assert json.loads(events[2]["attempt"]) == 1
    everything = [fields for _, fields in redis_client.xrange("foundryflow:events")]
    assert [e for e in everything if e["execution_id"] == str(execution)] == events


def test_progress_json_is_serializable() -> None:
    execution = start(pipeline(LINEAR, parameters=N_PARAM), {"n": 1})
    run_step(execution, "a")
    data = progress(execution).to_json()
    json.dumps(data)
    assert data["percent"] == 50.0 and data["steps"][0]["status"] == "COMPLETED"


def test_cancel_stops_new_work_and_cleans_up_like_a_failure(redis_client: Any) -> None:
    p = PipelineCatalog().get("t-rollback")
    execution = start(p, {"fail": False})
    run_step(execution, "make_a")

    finished = cancel_execution(execution, "operator pressed stop")
    assert finished.status == "CANCELLED"
    assert finished.error == "cancelled: operator pressed stop"
    assert redis_client.lrange(RESOURCE_LOG.format(execution), 0, -1) == [
        "create a",
        "delete a",
    ]
    report = progress(execution)
    assert report.rollback_status == "COMPLETED"
    assert statuses(execution) == {
        "make_a": "COMPENSATED",
        "make_b": "SKIPPED",
        "explode": "SKIPPED",
        "cleanup": "COMPLETED",  # the closing step saw execution.status == 'FAILED'
    }
    with session_scope() as session:
        cleanup = session.scalars(
            select(StepRun.outputs).where(
                StepRun.execution_id == execution, StepRun.step_id == "cleanup"
            )
        ).one()
    assert cleanup == {"value": {"reason": "cancelled: operator pressed stop", "b": None}}

    # the engine's remaining tasks arrive late: they do nothing
    late = run_step(execution, "make_b")
    assert late.status == StepStatus.SKIPPED and "not run" in (late.error or "")
    assert cancel_execution(execution).status == "CANCELLED"  # idempotent
    assert redis_client.llen(RESOURCE_LOG.format(execution)) == 2


def test_engine_stopping_a_healthy_run_triggers_the_closing_steps(redis_client: Any) -> None:
    """``argo stop`` between steps: nothing failed, but the rollback and closing steps run."""
    p = PipelineCatalog().get("t-rollback")
    execution = start(p, {"fail": False})
    run_step(execution, "make_a")
    assert rollback(execution, engine_failed=True).status == "COMPLETED"  # ff-rollback
    assert run_step(execution, "cleanup").status == StepStatus.COMPLETED  # a closing step
    finished = finish_execution(execution, engine_failed=True, engine_message="Stopped")
    assert finished.status == "FAILED" and finished.error == "Stopped"
    assert redis_client.lrange(RESOURCE_LOG.format(execution), 0, -1) == [
        "create a",
        "delete a",
    ]


def test_events_raised_in_a_transaction_wait_for_its_commit_and_die_with_its_rollback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import text

    from foundryflow.runtime import events
    from foundryflow.store.db import session_factory

    delivered: list[str] = []
    monkeypatch.setattr(events, "_to_streams", lambda *args: None)
    monkeypatch.setattr(events, "listeners", lambda: (lambda kind, fields: delivered.append(kind),))
    session = session_factory()()
    try:
        session.execute(text("SELECT 1"))
        events.publish("first", {}, [], session=session)
        events.publish("second", {}, [], session=session)
        assert delivered == []  # nothing before the commit
        session.commit()
        assert delivered == ["first", "second"]
        session.execute(text("SELECT 1"))
        events.publish("undone", {}, [], session=session)
        session.rollback()
        session.execute(text("SELECT 1"))
        session.commit()
        assert delivered == ["first", "second"]  # the rolled-back one never goes out
    finally:
        session.close()
