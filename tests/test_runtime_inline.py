"""The in-process engine (runner pods of pipeline deployments) against real PostgreSQL and
Redis: same runtime calls as Airflow and Argo, so the same records."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import foundryflow.runtime.inline as inline
from foundryflow.runtime import InlineResult, execution_id_for, progress, run_inline, work_loop
from foundryflow.spec.loader import PipelineCatalog, parse_pipeline
from foundryflow.spec.model import Pipeline
from foundryflow.store.db import session_scope
from foundryflow.store.models import ExecutionStatus, StepRun

RESOURCE_PREFIX = "foundryflow-test:resource:"
RESOURCE_LOG = "foundryflow-test:resource-log:{}"

PARALLEL_YAML = """
name: t-inline-parallel
steps:
  - id: left
    action: test.sleep
    params: {seconds: 1}
  - id: right
    action: test.sleep
    params: {seconds: 1}
  - id: joined
    action: test.echo
    depends_on: [left, right]
    params: {value: "{{ steps.left.status }}+{{ steps.right.status }}"}
outputs:
  joined: "{{ steps.joined.outputs.value }}"
"""


def catalog_pipeline(name: str) -> Pipeline:
    return PipelineCatalog(require_actions=False).get(name)


def run_id() -> str:
    return f"test/{uuid.uuid4().hex}"


def step_statuses(result: InlineResult) -> dict[str, str]:
    return {step.id: step.status for step in progress(result.execution_id).steps}


def test_linear_completes_like_the_airflow_dag() -> None:
    result = run_inline(catalog_pipeline("t-linear"), {"a": 3}, engine_run_id=run_id())

    assert result.status == ExecutionStatus.COMPLETED and result.error is None
    assert result.outputs == {
        "total": 9,
        "summary": {
            "tags": ["x", "y"],
            "total": 9,
            "slow": "skipped",
            "label": "run t-linear total=9",
        },
    }
    assert step_statuses(result) == {
        "first": "COMPLETED",
        "second": "COMPLETED",
        "only_slow": "SKIPPED",
        "last": "COMPLETED",
    }
    report = progress(result.execution_id)
    assert (report.engine, report.engine_run_id) == ("inline", result.engine_run_id)
    assert report.params == {"a": 3, "b": 5, "mode": "fast", "tags": ["x", "y"]}
    skipped = next(s for s in report.steps if s.id == "only_slow")
    assert "condition is false" in (skipped.error or "")
    assert report.percent == 100.0 and report.finished_at is not None


def test_same_engine_run_id_returns_the_recorded_run() -> None:
    key = run_id()
    first = run_inline(catalog_pipeline("t-linear"), {"a": 1}, engine_run_id=key)
    again = run_inline(catalog_pipeline("t-linear"), {"a": 1}, engine_run_id=key)
    assert again == first


def test_fanout_maps_items() -> None:
    result = run_inline(
        catalog_pipeline("t-fanout"), {"numbers": [2, 3, 4]}, engine_run_id=run_id()
    )

    assert result.status == ExecutionStatus.COMPLETED
    assert result.outputs == {"squares": [4, 9, 16]}
    square = next(s for s in progress(result.execution_id).steps if s.id == "square")
    assert square.status == "COMPLETED" and (square.items_total, square.items_done) == (3, 3)


def test_rollback_compensates_and_runs_the_finally_step(redis_client: Any) -> None:
    result = run_inline(catalog_pipeline("t-rollback"), {}, engine_run_id=run_id())

    assert result.status == ExecutionStatus.FAILED
    assert "explode" in (result.error or "") and "exploded on purpose" in (result.error or "")
    execution_id = result.execution_id
    for name in ("a", "b"):
        assert not redis_client.exists(f"{RESOURCE_PREFIX}{execution_id}:{name}")
    assert redis_client.lrange(RESOURCE_LOG.format(execution_id), 0, -1) == [
        "create a",
        "create b",
        "delete b",
        "delete a",
    ]
    assert step_statuses(result) == {
        "make_a": "COMPENSATED",
        "make_b": "COMPENSATED",
        "explode": "FAILED",
        "cleanup": "COMPLETED",
    }
    report = progress(execution_id)
    assert report.rollback_status == "COMPLETED" and report.rollback_error is None


def test_independent_steps_run_in_parallel(tmp_path: Path) -> None:
    (tmp_path / "t-inline-parallel.yaml").write_text(PARALLEL_YAML)
    pipeline = PipelineCatalog([tmp_path], require_actions=False).get("t-inline-parallel")

    began = time.monotonic()
    result = run_inline(pipeline, {}, engine_run_id=run_id())
    elapsed = time.monotonic() - began

    assert result.status == ExecutionStatus.COMPLETED
    assert result.outputs == {"joined": "COMPLETED+COMPLETED"}
    assert elapsed < 1.8, f"two 1 s steps took {elapsed:.2f} s: they did not overlap"


def test_stop_before_start_cancels_and_runs_nothing() -> None:
    stop = threading.Event()
    stop.set()
    result = run_inline(catalog_pipeline("t-linear"), {"a": 3}, engine_run_id=run_id(), stop=stop)

    assert result.status == ExecutionStatus.CANCELLED
    assert (result.error or "").startswith("cancelled: stopped")
    report = progress(result.execution_id)
    assert {s.status for s in report.steps} == {"SKIPPED"}
    assert all(s.attempt == 0 and s.started_at is None for s in report.steps)
    assert report.finished_at is not None


def test_runtime_exception_is_recorded_not_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    real_run_step = inline.run_step

    def flaky(execution_id: uuid.UUID, step_id: str, *args: Any) -> Any:
        if step_id == "second":
            raise ConnectionError("database went away")
        return real_run_step(execution_id, step_id, *args)

    monkeypatch.setattr(inline, "run_step", flaky)
    result = run_inline(catalog_pipeline("t-linear"), {"a": 3}, engine_run_id=run_id())

    assert result.status == ExecutionStatus.FAILED
    assert result.error == "the inline engine failed: ConnectionError: database went away"
    assert step_statuses(result) == {
        "first": "COMPLETED",
        "second": "SKIPPED",
        "only_slow": "SKIPPED",
        "last": "SKIPPED",
    }
    assert progress(result.execution_id).finished_at is not None


def test_work_loop_runs_repeatedly_with_distinct_ids(tmp_path: Path) -> None:
    heartbeat = tmp_path / "probe" / "heartbeat"
    results: list[InlineResult] = []

    runs = work_loop(
        catalog_pipeline("t-echo"),
        {"message": "hi"},
        worker_id="runner-0",
        interval=0.05,
        max_runs=3,
        stop=threading.Event(),
        on_result=results.append,
        heartbeat=heartbeat,
    )

    assert runs == 3 and len(results) == 3
    assert all(
        r.status == ExecutionStatus.COMPLETED and r.outputs == {"said": "hi"} for r in results
    )
    ids = [progress(r.execution_id).engine_run_id for r in results]
    assert len(set(ids)) == 3 and len({r.execution_id for r in results}) == 3
    assert all(i.startswith("runner-0/") for i in ids)
    assert [i.rsplit("/", 1)[1] for i in ids] == ["1", "2", "3"]
    assert heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < 30


def test_work_loop_ids_differ_across_restarts() -> None:
    results: list[InlineResult] = []
    for _ in range(2):  # the same pod name, restarted
        work_loop(
            catalog_pipeline("t-echo"),
            {"message": "hi"},
            worker_id="runner-restarted",
            interval=0,
            max_runs=1,
            stop=threading.Event(),
            on_result=results.append,
        )
    assert results[0].engine_run_id != results[1].engine_run_id


def test_stop_ends_the_loop_during_the_wait() -> None:
    stop = threading.Event()
    first_run = threading.Event()
    returned: list[int] = []

    def loop() -> None:
        returned.append(
            work_loop(
                catalog_pipeline("t-echo"),
                {"message": "hi"},
                worker_id="runner-stop",
                interval=60,
                stop=stop,
                on_result=lambda _: first_run.set(),
            )
        )

    thread = threading.Thread(target=loop)
    thread.start()
    assert first_run.wait(30)
    time.sleep(0.1)  # now in the 60 s wait
    stopped_at = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 1.0
    assert returned == [1]


def test_dependents_of_a_failed_step_never_start(redis_client: Any) -> None:
    pipeline = parse_pipeline(
        {
            "name": "t-inline-upstream-failed",
            "settings": {"on_failure": "rollback"},
            "steps": [
                {"id": "make", "action": "test.resource", "params": {"name": "m"}},
                {"id": "boom", "action": "test.fail", "depends_on": ["make"]},
                {
                    "id": "after",
                    "action": "test.resource",
                    "depends_on": ["boom"],
                    "params": {"name": "never"},
                },
            ],
        },
        "test",
    )
    result = run_inline(pipeline, {}, engine_run_id=run_id())

    assert result.status == ExecutionStatus.FAILED
    assert step_statuses(result) == {"make": "COMPENSATED", "boom": "FAILED", "after": "SKIPPED"}
    log = redis_client.lrange(RESOURCE_LOG.format(result.execution_id), 0, -1)
    assert log == ["create m", "delete m"]


def test_stop_during_a_fanout_starts_no_more_items() -> None:
    pipeline = parse_pipeline(
        {
            "name": "t-inline-stop-items",
            "steps": [
                {
                    "id": "nap",
                    "action": "test.sleep",
                    "foreach": [0.5] * 6,
                    "params": {"seconds": "{{ item }}"},
                }
            ],
        },
        "test",
    )
    stop = threading.Event()
    key = run_id()

    def stop_once_two_items_run() -> None:  # a SIGTERM arriving mid-fan-out
        execution_id = execution_id_for("inline", key)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not stop.is_set():
            with session_scope() as session:
                running = session.scalar(
                    select(func.count()).where(
                        StepRun.execution_id == execution_id,
                        StepRun.map_index >= 0,
                        StepRun.status == "RUNNING",
                    )
                )
            if running == 2:
                stop.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=stop_once_two_items_run)
    watcher.start()
    result = run_inline(pipeline, {}, engine_run_id=key, max_parallel=2, stop=stop)
    stop.set()
    watcher.join()

    assert result.status == ExecutionStatus.CANCELLED
    with session_scope() as session:
        items = session.scalars(
            select(StepRun.status)
            .where(StepRun.execution_id == result.execution_id, StepRun.map_index >= 0)
            .order_by(StepRun.map_index)
        ).all()
    # The two running items finished; the others never started (settle: SKIPPED).
    assert items == ["COMPLETED"] * 2 + ["SKIPPED"] * 4
    assert progress(result.execution_id).finished_at is not None
