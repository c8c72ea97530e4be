"""The compiled Airflow DAGs, really run with ``dag.test()`` against PostgreSQL and Redis.

Every run is checked twice: what Airflow recorded (DagRun and task-instance states) and
what the foundryflow runtime recorded (the execution and its steps in PostgreSQL), which
must agree. Airflow is imported inside the tests only: conftest configures it first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from foundryflow.config import REPO_ROOT
from foundryflow.runtime import ExecutionProgress, execution_id_for, progress
from foundryflow.store.db import session_scope
from foundryflow.store.models import Execution

pytestmark = pytest.mark.airflow

GUARDRAIL_DAGS = {
    "guardrail-cluster-recommendation",
    "guardrail-deployment",
    "guardrail-model-onboarding",
}
TEST_DAGS = {"t-linear", "t-fanout", "t-rollback"}
USECASE_DAGS = {"usecase-agent-rag", "usecase-rag-memory"}
"""One per template in usecases/ (dags/foundryflow_usecases.py)."""
RESOURCE_PREFIX = "foundryflow-test:resource:"


# --------------------------------------------------------------------------- helpers
def run(dag: Any, conf: dict[str, Any]) -> Any:
    """One real DAG run in this (main) thread; returns the DagRun."""
    return dag.test(run_conf=conf)


def states(dag_run: Any) -> dict[str, str]:
    """task_id -> state of the unmapped task instances."""
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances() if ti.map_index == -1}


def mapped_states(dag_run: Any, task_id: str) -> dict[int, str]:
    return {
        ti.map_index: str(ti.state)
        for ti in dag_run.get_task_instances()
        if ti.task_id == task_id and ti.map_index >= 0
    }


def execution_of(dag: Any, dag_run: Any) -> ExecutionProgress:
    return progress(execution_id_for("airflow", f"{dag.dag_id}/{dag_run.run_id}"))


def step_statuses(report: ExecutionProgress) -> dict[str, str]:
    return {step.id: step.status for step in report.steps}


def execution_count(pipeline: str) -> int:
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).select_from(Execution).where(Execution.pipeline == pipeline)
        )
        return count or 0


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter (settings are cached per process); its stdout is JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


DAGBAG_SCRIPT = """
    import json, logging
    logging.disable(logging.CRITICAL)
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder={folder!r})
    print(json.dumps({{"dag_ids": sorted(bag.dag_ids), "import_errors": bag.import_errors}}))
"""


# --------------------------------------------------------------------------- runs
def test_linear_success_records_outputs_and_skips_condition(dags: dict[str, Any]) -> None:
    dag = dags["t-linear"]
    dr = run(dag, {"a": 3})

    assert str(dr.state) == "success"
    assert states(dr) == {
        "ff_start": "success",
        "first": "success",
        "second": "success",
        "only_slow": "skipped",
        "last": "success",
        "ff_finish": "success",
    }
    report = execution_of(dag, dr)
    assert report.engine == "airflow"
    assert report.engine_run_id == f"t-linear/{dr.run_id}"
    assert report.status == "COMPLETED"
    assert report.error is None
    assert report.params == {"a": 3, "b": 5, "mode": "fast", "tags": ["x", "y"]}
    assert report.outputs == {
        "total": 9,  # (3 + 5) + 1, an int, not "9"
        "summary": {
            "tags": ["x", "y"],
            "total": 9,
            "slow": "skipped",
            "label": "run t-linear total=9",
        },
    }
    assert step_statuses(report) == {
        "first": "COMPLETED",
        "second": "COMPLETED",
        "only_slow": "SKIPPED",
        "last": "COMPLETED",
    }
    skipped = next(s for s in report.steps if s.id == "only_slow")
    assert "condition is false" in (skipped.error or "")
    assert report.percent == 100.0
    assert report.finished_at is not None


def test_linear_slow_mode_runs_the_conditional_step(dags: dict[str, Any]) -> None:
    dag = dags["t-linear"]
    dr = run(dag, {"a": 1, "b": 2, "mode": "slow"})

    assert str(dr.state) == "success"
    assert states(dr)["only_slow"] == "success"
    report = execution_of(dag, dr)
    assert report.status == "COMPLETED"
    assert step_statuses(report)["only_slow"] == "COMPLETED"
    assert report.outputs is not None
    assert report.outputs["total"] == 4
    assert report.outputs["summary"]["slow"] == "slow"


def test_rollback_compensates_in_reverse_and_runs_finally_step(
    dags: dict[str, Any], redis_client: Any
) -> None:
    dag = dags["t-rollback"]
    dr = run(dag, {})

    assert str(dr.state) == "failed"
    ti = states(dr)
    assert ti["make_a"] == "success"
    assert ti["make_b"] == "success"
    assert ti["explode"] == "failed"
    assert ti["ff_rollback"] == "success"
    assert ti["cleanup"] == "success"  # finally step: execution.status == 'FAILED'
    assert ti["ff_finish"] == "failed"

    report = execution_of(dag, dr)
    execution_id = report.id
    for name in ("a", "b"):
        assert not redis_client.exists(f"{RESOURCE_PREFIX}{execution_id}:{name}")
    assert redis_client.lrange(f"foundryflow-test:resource-log:{execution_id}", 0, -1) == [
        "create a",
        "create b",
        "delete b",
        "delete a",
    ]
    assert report.status == "FAILED"
    assert "exploded on purpose" in (report.error or "")
    assert "explode" in (report.error or "")
    assert report.rollback_status == "COMPLETED"
    assert report.rollback_error is None
    assert step_statuses(report) == {
        "make_a": "COMPENSATED",
        "make_b": "COMPENSATED",
        "explode": "FAILED",
        "cleanup": "COMPLETED",
    }
    explode = next(s for s in report.steps if s.id == "explode")
    assert "exploded on purpose" in (explode.error or "")


def test_rollback_pipeline_that_succeeds_keeps_resources(
    dags: dict[str, Any], redis_client: Any
) -> None:
    dag = dags["t-rollback"]
    dr = run(dag, {"fail": False})

    assert str(dr.state) == "success"
    ti = states(dr)
    assert ti["make_a"] == ti["make_b"] == "success"
    assert ti["explode"] == "skipped"
    assert ti["ff_rollback"] == "skipped"
    assert ti["cleanup"] == "skipped"  # condition false: the run did not fail
    assert ti["ff_finish"] == "success"

    report = execution_of(dag, dr)
    assert report.status == "COMPLETED"
    assert report.rollback_status is None
    assert step_statuses(report) == {
        "make_a": "COMPLETED",
        "make_b": "COMPLETED",
        "explode": "SKIPPED",
        "cleanup": "SKIPPED",
    }
    for name in ("a", "b"):
        assert redis_client.exists(f"{RESOURCE_PREFIX}{report.id}:{name}") == 1
    assert redis_client.lrange(f"foundryflow-test:resource-log:{report.id}", 0, -1) == [
        "create a",
        "create b",
    ]


def test_fanout_maps_one_task_per_item(dags: dict[str, Any]) -> None:
    dag = dags["t-fanout"]
    dr = run(dag, {"numbers": [2, 3, 4]})

    assert str(dr.state) == "success"
    assert mapped_states(dr, "square") == {0: "success", 1: "success", 2: "success"}
    ti = states(dr)
    assert ti["square__fanout"] == "success"
    assert ti["gather"] == "success"
    assert ti["ff_finish"] == "success"
    report = execution_of(dag, dr)
    assert report.status == "COMPLETED"
    assert report.outputs == {"squares": [4, 9, 16]}
    square = next(s for s in report.steps if s.id == "square")
    assert square.status == "COMPLETED"
    assert (square.items_total, square.items_done) == (3, 3)


def test_fanout_over_nothing_succeeds_with_empty_list(dags: dict[str, Any]) -> None:
    dag = dags["t-fanout"]
    dr = run(dag, {"numbers": []})

    assert str(dr.state) == "success"
    assert mapped_states(dr, "square") == {}
    assert states(dr)["gather"] == "success"
    report = execution_of(dag, dr)
    assert report.status == "COMPLETED"
    assert report.outputs == {"squares": []}
    assert step_statuses(report) == {"square": "COMPLETED", "gather": "COMPLETED"}


def test_invalid_param_is_rejected_before_anything_is_recorded(dags: dict[str, Any]) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    before = execution_count("t-linear")
    with pytest.raises(ParamValidationError) as caught:
        run(dags["t-linear"], {"a": "three"})
    message = str(caught.value)
    assert "param a" in message
    assert "'three' is not of type 'integer'" in message
    assert execution_count("t-linear") == before

    with pytest.raises(ParamValidationError, match="param a"):
        run(dags["t-linear"], {"a": 1001})  # above the spec's maximum
    assert execution_count("t-linear") == before


# --------------------------------------------------------------------------- trigger form
def test_guardrail_params_form(dags: dict[str, Any]) -> None:
    params = dags["guardrail-cluster-recommendation"].params
    assert set(params) == {"workflow_id", "models", "hardware_mode", "callback_topics"}

    mode = params.get_param("hardware_mode")
    assert mode.schema["enum"] == ["dedicated", "shared"]
    assert mode.schema["type"] == "string"
    assert mode.description == "Dedicated hardware per model, or shared nodes."

    for name in ("workflow_id", "models", "hardware_mode"):
        assert not params.get_param(name).has_value, f"required {name} must have no default"

    topics = params.get_param("callback_topics")
    assert "null" in topics.schema["type"]
    assert topics.resolve(None) is None
    assert topics.resolve(["ui:progress"]) == ["ui:progress"]
    assert "Redis Stream" in (topics.description or "")

    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        mode.resolve("exclusive")  # not in the drop-down


def test_linear_params_form_bounds(dags: dict[str, Any]) -> None:
    params = dags["t-linear"].params
    a = params.get_param("a").schema
    assert a["type"] == "integer"
    assert a["minimum"] == 0
    assert a["maximum"] == 1000
    assert not params.get_param("a").has_value
    assert params.get_param("b").value == 5
    assert params.get_param("mode").schema["enum"] == ["fast", "slow", None]
    assert params.get_param("mode").value == "fast"


# --------------------------------------------------------------------------- structure
def test_every_dag_is_framed_by_start_and_finish(dags: dict[str, Any]) -> None:
    assert set(dags) >= GUARDRAIL_DAGS | TEST_DAGS
    for dag_id, dag in dags.items():
        assert dag.has_task("ff_start"), dag_id
        assert dag.has_task("ff_finish"), dag_id
        finish = dag.get_task("ff_finish")
        assert finish.trigger_rule == "all_done", dag_id
        assert "ff_start" in finish.upstream_task_ids, dag_id
        assert dag.get_task("ff_start").upstream_task_ids == set(), dag_id
        # ff_finish is the only leaf: nothing runs after the final status is recorded
        assert [t.task_id for t in dag.leaves] == ["ff_finish"], dag_id

    rollback_dag = dags["t-rollback"]
    rollback = rollback_dag.get_task("ff_rollback")
    assert rollback.trigger_rule == "all_done"
    assert rollback.upstream_task_ids == {"explode"}
    assert rollback_dag.get_task("cleanup").upstream_task_ids == {"ff_rollback"}
    assert not dags["t-linear"].has_task("ff_rollback")


def test_dag_folder_loads_without_import_errors(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    # Airflow 3.3's DagBag has no include_examples: conftest sets CORE__LOAD_EXAMPLES=False
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items())
    assert set(bag.dag_ids) >= GUARDRAIL_DAGS | TEST_DAGS | USECASE_DAGS
    assert not any(d.startswith("example_") for d in bag.dag_ids)


def test_broken_spec_is_an_import_error_and_valid_dags_still_load(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "tests" / "pipelines" / "t-linear.yaml", tmp_path / "t-linear.yaml")
    (tmp_path / "t-cycle.yaml").write_text(
        textwrap.dedent(
            """
            name: t-cycle
            steps:
              - {id: one, action: test.echo, depends_on: [two]}
              - {id: two, action: test.echo, depends_on: [one]}
            """
        )
    )
    env = {**os.environ, "FOUNDRYFLOW_PIPELINES_PATH": json.dumps([str(tmp_path)])}
    result = run_python(DAGBAG_SCRIPT.format(folder=str(REPO_ROOT / "dags")), env)

    assert sorted(set(result["dag_ids"]) - USECASE_DAGS) == ["t-linear"]
    errors = result["import_errors"]
    assert len(errors) == 1, errors
    ((path, message),) = errors.items()
    assert path.endswith("foundryflow_spec_errors.py")
    assert "t-cycle.yaml" in message
    assert "dependency cycle" in message
    assert "one -> two -> one" in message or "two -> one -> two" in message


def test_building_dags_needs_no_database_or_network(dags: dict[str, Any]) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {
        **os.environ,
        "FOUNDRYFLOW_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{closed}/nothing",
        "FOUNDRYFLOW_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
    }
    built = run_python(
        """
        import json
        from foundryflow.compile.airflow import build_dags
        print(json.dumps(sorted(build_dags())))
        """,
        env,
        timeout=60,
    )
    assert set(built) == set(dags)  # the same DAGs as with the services up
    assert set(built) >= GUARDRAIL_DAGS | TEST_DAGS

    result = run_python(DAGBAG_SCRIPT.format(folder=str(REPO_ROOT / "dags")), env)
    assert set(result["dag_ids"]) == set(built) | USECASE_DAGS
    # A broken spec may be reported (by foundryflow_spec_errors.py); nothing may fail
    # because the database or Redis is unreachable.
    errors = result["import_errors"]
    assert not [path for path in errors if path.endswith("foundryflow_pipelines.py")], errors
    for message in errors.values():
        assert "Connection refused" not in message
        assert "OperationalError" not in message
        assert str(closed) not in message
