"""``/metrics`` over HTTP: every family read from PostgreSQL and Redis at scrape time, with
values checked against data each test creates (under names of its own), and a scrape that
still answers when a source is down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

import foundryflow.metrics as metrics
from foundryflow.api import create_app
from foundryflow.benchmark.matrix import populate
from foundryflow.benchmark.queue import claim_batch, complete, reset_stale
from foundryflow.ops.redis_reconcile import JOB
from foundryflow.ops.runs import record_run
from foundryflow.store.catalog import BenchmarkConfig
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import Cluster, ClusterBackendName
from foundryflow.store.models import Execution, ExecutionStatus, StepRun, StepStatus
from foundryflow.store.ops import OpsOutcome, OpsRun
from foundryflow.store.redis_client import get_redis
from foundryflow.store.usecase import DeploymentStatus as UseCaseStatus
from foundryflow.store.usecase import UseCaseDeployment
from tests.test_matrix import Catalog, drop_test_rows, make_catalog, make_version

CLOSED_PORT = 1
"""Nothing listens there: connections are refused at once."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: Samples
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, (name, labels, sorted(n for n, _ in self.samples))
        return self.samples[key]

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples


def scrape(api: TestClient) -> Scrape:
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(response.text, samples, types)


@pytest.fixture
def api() -> TestClient:
    return TestClient(create_app())


# --------------------------------------------------------------------------- data
@pytest.fixture
def pipeline() -> Iterator[str]:
    """A pipeline name of this test: one COMPLETED execution of 3 s, one FAILED of 100 s
    (a failed step, and a failed fan-out step with two failed items) and one RUNNING."""
    name = f"metrics-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)

    def execution(status: ExecutionStatus, seconds: float | None) -> Execution:
        return Execution(
            id=uuid.uuid4(),
            pipeline=name,
            version="1",
            spec={},
            engine="test",
            engine_run_id=uuid.uuid4().hex,
            params={},
            status=status,
            started_at=now - timedelta(seconds=seconds or 1),
            finished_at=None if seconds is None else now,
        )

    failed = execution(ExecutionStatus.FAILED, 100)
    failed.steps = [
        StepRun(pipeline=name, step_id="fetch", map_index=-1, status=StepStatus.COMPLETED),
        StepRun(pipeline=name, step_id="check", map_index=-1, status=StepStatus.FAILED),
        StepRun(pipeline=name, step_id="fan", map_index=-1, status=StepStatus.FAILED),
        StepRun(pipeline=name, step_id="fan", map_index=0, status=StepStatus.FAILED),
        StepRun(pipeline=name, step_id="fan", map_index=1, status=StepStatus.FAILED),
    ]
    with session_scope() as session:
        session.add_all(
            [
                execution(ExecutionStatus.COMPLETED, 3),
                failed,
                execution(ExecutionStatus.RUNNING, None),
            ]
        )
    yield name
    with session_scope() as session:
        session.execute(delete(Execution).where(Execution.pipeline == name))


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    catalog = make_catalog()
    yield catalog
    drop_test_rows(catalog)


@dataclass(frozen=True)
class Matrix:
    version: int
    configs: int


@pytest.fixture
def matrix(catalog: Catalog) -> Matrix:
    """A populated matrix: three claimed (one completed with its result, one whose worker
    stopped heartbeating three hours ago, one running), the rest pending."""
    version = make_version()
    inserted = populate(version, catalog.filters()).inserted
    assert inserted > 3
    first, stale, _running = claim_batch("metrics-worker", 3, model_version_id=version)
    now = datetime.now(UTC)
    assert complete(first.id, "metrics-worker", "noop", {"ok": 1}, now, now)
    with session_scope() as session:
        session.execute(
            update(BenchmarkConfig)
            .where(BenchmarkConfig.id == stale.id)
            .values(heartbeat_at=func.now() - timedelta(hours=3))
        )
    return Matrix(version, inserted)


@dataclass(frozen=True)
class Runs:
    job: str
    last_succeeded: datetime
    last_failed: datetime


@pytest.fixture
def ops_runs() -> Iterator[Runs]:
    """Two succeeded runs and a failed one of a job of this test, and the newest
    redis_reconcile runs: one with figures, then a failed one without."""
    job = f"test_{uuid.uuid4().hex[:10]}"
    base = datetime.now(UTC) - timedelta(minutes=30)
    ids = [
        record_run(job, base, OpsOutcome.SUCCEEDED, {}, finished_at=base + timedelta(minutes=1)),
        record_run(job, base, OpsOutcome.SUCCEEDED, {}, finished_at=base + timedelta(minutes=5)),
        record_run(
            job, base, OpsOutcome.FAILED, {}, "boom", finished_at=base + timedelta(minutes=9)
        ),
    ]
    figures = {
        "configs": 7,
        "missing": 2,
        "drifted": 3,
        "orphaned": 1,
        "repaired": 5,
        "write_latency_mean_seconds": 0.002,
        "write_latency_max_seconds": 0.011,
    }
    now = datetime.now(UTC)
    ids.append(record_run(JOB, now, OpsOutcome.SUCCEEDED, figures))
    # a later run that failed before it had figures (Redis down) keeps the last figures shown
    ids.append(record_run(JOB, now + timedelta(seconds=1), OpsOutcome.FAILED, {}, "down"))
    yield Runs(job, base + timedelta(minutes=5), base + timedelta(minutes=9))
    with session_scope() as session:
        session.execute(delete(OpsRun).where(OpsRun.id.in_(ids)))


@pytest.fixture
def usecase() -> Iterator[None]:
    """A RUNNING and a STOPPED use-case deployment on a cluster of this test."""
    with session_scope() as session:
        cluster = Cluster(name=f"metrics-{uuid.uuid4().hex[:10]}", backend=ClusterBackendName.LOCAL)
        session.add(cluster)
        session.flush()
        cluster_id = cluster.id
        for status in (UseCaseStatus.RUNNING, UseCaseStatus.STOPPED):
            session.add(
                UseCaseDeployment(
                    name=f"m-{uuid.uuid4().hex[:8]}",
                    template="test",
                    template_version="1",
                    pipeline="test",
                    cluster_id=cluster_id,
                    namespace="test",
                    selections={},
                    parameters={},
                    status=status,
                )
            )
    yield
    with session_scope() as session:
        session.execute(delete(UseCaseDeployment).where(UseCaseDeployment.cluster_id == cluster_id))
        session.execute(delete(Cluster).where(Cluster.id == cluster_id))


# --------------------------------------------------------------------------- families
def test_every_family_has_the_values_of_the_data(
    api: TestClient, pipeline: str, matrix: Matrix, ops_runs: Runs, usecase: None
) -> None:
    scraped = scrape(api)

    assert scraped.value("foundryflow_database_up") == 1
    assert scraped.value("foundryflow_redis_up") == 1
    info = get_redis().info("memory")
    assert scraped.value("foundryflow_redis_memory_used_bytes") > 0
    assert scraped.value("foundryflow_redis_memory_max_bytes") == info["maxmemory"]

    # executions: RUNNING is counted but has no duration; the histogram is cumulative
    for status in ("COMPLETED", "FAILED", "RUNNING"):
        assert scraped.value("foundryflow_executions_total", pipeline=pipeline, status=status) == 1
    assert scraped.types["foundryflow_executions"] == "counter"
    assert scraped.types["foundryflow_execution_duration_seconds"] == "histogram"
    count = scraped.value("foundryflow_execution_duration_seconds_count", pipeline=pipeline)
    assert count == 2
    total = scraped.value("foundryflow_execution_duration_seconds_sum", pipeline=pipeline)
    assert total == pytest.approx(103, abs=0.5)
    expected = {"1.0": 0, "5.0": 1, "60.0": 1, "120.0": 2, "3600.0": 2, "+Inf": 2}
    for bound, cumulative in expected.items():
        name = "foundryflow_execution_duration_seconds_bucket"
        assert scraped.value(name, pipeline=pipeline, le=bound) == cumulative, bound
    # steps: a fan-out step counts once, whatever its failed items
    failures = "foundryflow_step_failures_total"
    assert scraped.value(failures, pipeline=pipeline, step="check") == 1
    assert scraped.value(failures, pipeline=pipeline, step="fan") == 1
    assert not scraped.has(failures, pipeline=pipeline, step="fetch")

    # the matrix
    version = str(matrix.version)
    configs = "foundryflow_matrix_configs"
    assert scraped.value(configs, model_version=version, status="pending") == matrix.configs - 3
    assert scraped.value(configs, model_version=version, status="running") == 2
    assert scraped.value(configs, model_version=version, status="completed") == 1
    assert scraped.value(configs, model_version=version, status="failed") == 0
    assert scraped.value("foundryflow_matrix_claims_total", model_version=version) == 3
    assert scraped.value("foundryflow_matrix_results_total", model_version=version) == 1
    assert scraped.value("foundryflow_matrix_stale_configs", model_version=version) == 1
    assert scraped.types["foundryflow_matrix_claims"] == "counter"

    # maintenance runs and the last reconcile with figures
    runs, last = "foundryflow_ops_runs_total", "foundryflow_ops_last_run_timestamp_seconds"
    assert scraped.value(runs, job=ops_runs.job, outcome="succeeded") == 2
    assert scraped.value(runs, job=ops_runs.job, outcome="failed") == 1
    assert scraped.value(last, job=ops_runs.job, outcome="succeeded") == pytest.approx(
        ops_runs.last_succeeded.timestamp()
    )
    assert scraped.value(last, job=ops_runs.job, outcome="failed") == pytest.approx(
        ops_runs.last_failed.timestamp()
    )
    assert scraped.value(runs, job=JOB, outcome="failed") >= 1
    assert scraped.value("foundryflow_redis_config_drift") == 5
    latency = "foundryflow_redis_sync_latency_seconds"
    assert scraped.value(latency, stat="mean") == pytest.approx(0.002)
    assert scraped.value(latency, stat="max") == pytest.approx(0.011)

    # use cases and pipeline deployments: every status, as the database counts them
    with session_scope() as session:
        counts = dict(
            session.execute(
                select(UseCaseDeployment.status, func.count()).group_by(UseCaseDeployment.status)
            ).all()
        )
    assert counts[UseCaseStatus.RUNNING] >= 1 and counts[UseCaseStatus.STOPPED] >= 1
    for status in UseCaseStatus:
        assert scraped.value("foundryflow_usecase_deployments", status=status.value) == counts.get(
            status, 0
        )
    assert scraped.has("foundryflow_deployment_total", status="active")


def test_stale_configs_are_the_ones_reset_stale_takes(api: TestClient, matrix: Matrix) -> None:
    assert timedelta(hours=2) == metrics.STALE_AFTER
    version = str(matrix.version)
    assert scrape(api).value("foundryflow_matrix_stale_configs", model_version=version) == 1
    reset = reset_stale()
    assert reset >= 1
    scraped = scrape(api)
    assert scraped.value("foundryflow_matrix_stale_configs", model_version=version) == 0
    configs = "foundryflow_matrix_configs"
    assert scraped.value(configs, model_version=version, status="running") == 1


def test_every_exposed_name_is_in_metric_names(
    api: TestClient, pipeline: str, matrix: Matrix, ops_runs: Runs
) -> None:
    exposed = scrape(api).names()
    assert exposed <= metrics.METRIC_NAMES, exposed - metrics.METRIC_NAMES
    # only the pipeline-deployment families need data this module does not create
    needs_deployments = {
        "foundryflow_deployment_duration_seconds_bucket",
        "foundryflow_deployment_duration_seconds_sum",
        "foundryflow_deployment_duration_seconds_count",
        "foundryflow_deployment_errors_total",
    }
    assert metrics.METRIC_NAMES - exposed <= needs_deployments
    assert metrics.RECONCILE_JOB == JOB


# --------------------------------------------------------------------------- sources down
def unreachable_database() -> sessionmaker[Session]:
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{CLOSED_PORT}/none")
    return sessionmaker(engine)


def unreachable_redis(url: str | None = None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=CLOSED_PORT, socket_connect_timeout=1)


def test_a_database_that_is_down_leaves_the_scrape_answering(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "session_factory", unreachable_database)
    scraped = scrape(api)
    assert scraped.value("foundryflow_database_up") == 0
    assert scraped.value("foundryflow_redis_up") == 1
    database_families = {
        name
        for name in metrics.METRIC_NAMES
        if not name.startswith(("foundryflow_database_", "foundryflow_redis_up"))
        and not name.startswith("foundryflow_redis_memory_")
    }
    assert not scraped.names() & database_families


def test_a_redis_that_is_down_leaves_the_scrape_answering(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, pipeline: str
) -> None:
    monkeypatch.setattr(metrics, "get_redis", unreachable_redis)
    scraped = scrape(api)
    assert scraped.value("foundryflow_redis_up") == 0
    assert not scraped.has("foundryflow_redis_memory_used_bytes")
    assert not scraped.has("foundryflow_redis_memory_max_bytes")
    assert scraped.value("foundryflow_database_up") == 1
    assert scraped.value("foundryflow_executions_total", pipeline=pipeline, status="FAILED") == 1


def test_both_down_still_answers(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "session_factory", unreachable_database)
    monkeypatch.setattr(metrics, "get_redis", unreachable_redis)
    scraped = scrape(api)
    assert scraped.samples == {
        ("foundryflow_database_up", frozenset()): 0,
        ("foundryflow_redis_up", frozenset()): 0,
    }


def test_a_group_whose_query_fails_is_left_out_alone(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, pipeline: str
) -> None:
    def broken(self: Any, session: Session) -> list[Any]:
        session.execute(text("SELECT * FROM no_such_table"))  # aborts the transaction
        return []

    monkeypatch.setattr(metrics.MatrixFamilies, "families", broken)
    scraped = scrape(api)
    assert scraped.value("foundryflow_database_up") == 1
    assert not any(name.startswith("foundryflow_matrix_") for name in scraped.names())
    # the groups after it still read the database
    assert scraped.value("foundryflow_executions_total", pipeline=pipeline, status="RUNNING") == 1
    assert scraped.has("foundryflow_usecase_deployments", status="RUNNING")
