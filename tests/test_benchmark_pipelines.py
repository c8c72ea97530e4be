"""The benchmark-matrix and spot-handler pipelines, run for real on both engines.

Airflow runs them with ``dag.test()`` (workers as mapped tasks), Argo through the local
runner (every pod a ``foundryflow`` process). Either way the matrix must end with every
config completed exactly once, and the execution record must say what the workers did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text

from foundryflow.benchmark.matrix import populate
from foundryflow.compile.argo import render_documents
from foundryflow.runtime import fanout, progress, run_step, start_execution
from foundryflow.spec.loader import PipelineCatalog
from foundryflow.store.db import get_engine
from tests.argo_local import LocalArgoRunner
from tests.test_airflow_dags import execution_of, mapped_states, run, states
from tests.test_argo_local_run import runner  # noqa: F401  (fixture)
from tests.test_matrix import Catalog, drop_test_rows, make_catalog, make_version
from tests.test_queue import assert_exactly_once, query, status_counts


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    catalog = make_catalog()
    yield catalog
    drop_test_rows(catalog)


def matrix_conf(catalog: Catalog, version: int, **overrides: Any) -> dict[str, Any]:
    """Params of a small matrix: 1 GPU x 1 framework x 2 workloads x 2 x 2 = 16 cells (the 8B
    model's weights fit the 8 x 80 GB node, not the 24 GB one)."""
    return {
        "model_version_id": version,
        "hardware": [catalog.small_gpu, catalog.big_gpu],  # small one skipped: does not fit
        "frameworks": [catalog.gpu_only],
        "workloads": ["chatbot", catalog.offline],
        "batch_sizes": [1, 8],
        "sequence_lengths": [512, 1024],
        "parallelism": 3,
        "batch": 4,
        "runner": "test-fixed",
        "runner_options": {},
    } | overrides


def template_of(pipeline: str) -> dict[str, Any]:
    documents = render_documents(PipelineCatalog().get(pipeline))
    return next(d for d in documents if d["kind"] == "WorkflowTemplate")


def make_stale(version: int) -> int:
    """Claim one config of ``version`` as a worker that died 3 hours ago; returns its id."""
    with get_engine().begin() as conn:
        return conn.execute(
            text(
                "UPDATE benchmark_configs SET status = 'running', claimed_by = 'dead-pod',"
                " claimed_at = now() - interval '3 hours', heartbeat_at = now() - interval"
                " '3 hours', attempts = 1 WHERE id = (SELECT min(id) FROM benchmark_configs"
                " WHERE model_version_id = :v) RETURNING id"
            ),
            {"v": version},
        ).scalar_one()


@pytest.mark.airflow
def test_airflow_benchmark_matrix_drains_with_mapped_workers(
    dags: dict[str, Any], catalog: Catalog
) -> None:
    version = make_version()
    dag = dags["benchmark-matrix"]
    dr = run(dag, matrix_conf(catalog, version))

    assert str(dr.state) == "success", states(dr)
    assert mapped_states(dr, "work") == {0: "success", 1: "success", 2: "success"}
    assert_exactly_once(version, 16)
    report = execution_of(dag, dr)
    assert report.status == "COMPLETED"
    assert report.outputs is not None
    assert report.outputs["inserted"] == 16
    assert sum(report.outputs["completed_per_worker"]) == 16
    assert report.outputs["counts"] == {"pending": 0, "running": 0, "completed": 16, "failed": 0}


@pytest.mark.airflow
def test_airflow_benchmark_matrix_bad_runner_fails_before_claiming(
    dags: dict[str, Any], catalog: Catalog
) -> None:
    version = make_version()
    dag = dags["benchmark-matrix"]
    dr = run(dag, matrix_conf(catalog, version, parallelism=1, runner_options={"nope": 1}))

    assert str(dr.state) == "failed"
    report = execution_of(dag, dr)
    assert report.status == "FAILED"
    assert "unknown option 'nope'" in (report.error or "")
    assert status_counts(version) == {"pending": 16}  # populated, nothing claimed


@pytest.mark.airflow
def test_airflow_reset_stale_cron_dag(dags: dict[str, Any], catalog: Catalog) -> None:
    dag = dags["spot-handler"]
    assert dag.schedule == "*/30 * * * *" or str(dag.timetable.summary) == "*/30 * * * *"
    version = make_version()
    run(dags["benchmark-matrix"], matrix_conf(catalog, version, parallelism=1))
    with get_engine().begin() as conn:
        conn.execute(
            text("UPDATE benchmark_configs SET status = 'pending' WHERE model_version_id = :v"),
            {"v": version},
        )
    stale = make_stale(version)

    dr = run(dag, {"older_than_minutes": 120})
    assert str(dr.state) == "success"
    report = execution_of(dag, dr)
    assert report.outputs is not None and report.outputs["reset"] >= 1
    with get_engine().connect() as conn:
        row = conn.execute(
            text("SELECT status, claimed_by FROM benchmark_configs WHERE id = :i"), {"i": stale}
        ).one()
    assert tuple(row) == ("pending", None)


def test_argo_benchmark_matrix_drains_with_parallel_pods(
    runner: LocalArgoRunner,  # noqa: F811
    catalog: Catalog,
) -> None:
    version = make_version()
    params = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in matrix_conf(
            catalog, version, parallelism=2, runner_options={"sleep_ms": 100}
        ).items()
    }
    wf = runner.submit(template_of("benchmark-matrix"), params)

    assert wf.status == "Succeeded", [(p.task, p.stderr[-400:]) for p in wf.pods]
    assert_exactly_once(version, 16)
    report = progress(UUID(wf.uid))
    assert report.engine == "argo" and report.status == "COMPLETED"
    assert report.outputs is not None
    per_worker = report.outputs["completed_per_worker"]
    assert sum(per_worker) == 16
    assert min(per_worker) > 0, per_worker  # the two pods really shared the queue
    assert report.outputs["counts"]["completed"] == 16
    workers = {p.task for p in wf.pods}
    assert {"populate", "summary"} <= workers


def test_argo_spot_handler_cron_workflow_resets_stale(
    runner: LocalArgoRunner,  # noqa: F811
    catalog: Catalog,
) -> None:
    documents = render_documents(PipelineCatalog().get("spot-handler"))
    cron = next(d for d in documents if d["kind"] == "CronWorkflow")
    assert cron["spec"]["schedules"] == ["*/30 * * * *"]
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == "spot-handler"
    version = make_version()
    populate(version, catalog.filters())
    stale = make_stale(version)

    wf = runner.submit(template_of("spot-handler"))
    assert wf.status == "Succeeded", [(p.task, p.stderr[-400:]) for p in wf.pods]
    with get_engine().connect() as conn:
        status = conn.execute(
            text("SELECT status FROM benchmark_configs WHERE id = :i"), {"i": stale}
        ).scalar_one()
    assert status == "pending"


def test_sigterm_stops_a_worker_step_cleanly(catalog: Catalog) -> None:
    """A pod told to stop (spot notice) records what it ran, releases the rest, fails the step."""
    version = make_version()
    pipeline = PipelineCatalog().get("benchmark-matrix")
    conf = matrix_conf(catalog, version, batch=10, runner_options={"sigterm_after": 3})
    execution = start_execution(pipeline, conf, engine="argo", engine_run_id="wf-sigterm")
    run_step(execution, "populate")
    assert len(fanout(execution, "work")) == 3

    outcome = run_step(execution, "work", map_index=0)
    assert not outcome.ok
    assert "stopped by a signal: 3 completed, 7 released" in (outcome.error or "")
    assert status_counts(version) == {"completed": 3, "pending": 13}
    assert query(
        "SELECT max(attempts) FROM benchmark_configs WHERE model_version_id = :v"
        " AND status = 'pending'",
        v=version,
    ) == [(0,)]  # released, not charged an attempt
