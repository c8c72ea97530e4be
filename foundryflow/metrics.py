"""Prometheus metrics of the platform, served by the Airflow plugin at ``/metrics``.

Collected from PostgreSQL and Redis at scrape time rather than counted in memory: actions
run in Airflow workers, Argo pods and runner pools, so no single process sees every event,
while the database records all of them. A scrape costs a few aggregate queries, one per
group of families (the matrix, executions and steps, maintenance runs, use cases, pipeline
deployments), and one ``INFO memory`` of Redis.

A source that is down never fails the scrape: ``foundryflow_database_up`` or
``foundryflow_redis_up`` says 0 and that source's other families are left out. A group
whose query fails on a live database (a table a lagging migration has not created yet) is
left out alone, and logged.

Choices the alerts depend on:

- ``model_version`` labels are ``model_versions.id`` (what ``foundryflow matrix progress``
  takes). ``foundryflow_matrix_claims_total`` sums ``benchmark_configs.attempts``: every
  claim counts, a claim given back unstarted (``release``) does not.
  ``foundryflow_matrix_stale_configs`` are the rows ``reset_stale`` would take with its
  default: ``running`` with ``heartbeat_at`` older than :data:`STALE_AFTER` (2 h).
- ``foundryflow_execution_duration_seconds`` covers finished executions (COMPLETED, FAILED,
  CANCELLED with a ``finished_at``), from ``started_at``.
- ``foundryflow_step_failures_total`` counts FAILED step rows of the steps themselves
  (``map_index`` -1): a fan-out step counts once when its items fail (its row then says how
  many), so a wide fan-out does not read as many failing steps.
- ``foundryflow_redis_sync_latency_seconds`` and ``foundryflow_redis_config_drift`` come
  from the newest ``redis_reconcile`` run that recorded figures: the mean and max latency
  of its Redis writes, and its missing + drifted configs.
- ``foundryflow_ops_last_run_timestamp_seconds`` is the ``finished_at`` of the last run
  of each job with each outcome, so "no successful backup for a day" is one expression.
- The counters are counts of rows: they restart lower when old rows are purged, which
  ``rate()`` and ``increase()`` treat as a counter reset.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import Session

from foundryflow.benchmark.queue import reset_stale
from foundryflow.config import get_settings
from foundryflow.store.catalog import BenchmarkConfig, BenchmarkResult, ConfigStatus
from foundryflow.store.db import session_factory, session_scope
from foundryflow.store.models import Execution, ExecutionStatus, StepRun, StepStatus
from foundryflow.store.ops import OpsRun
from foundryflow.store.pipeline_deployment import (
    DeploymentStatus,
    PipelineDeployment,
    PipelineDeploymentRevision,
    RevisionOutcome,
)
from foundryflow.store.redis_client import get_redis
from foundryflow.store.usecase import DeploymentStatus as UseCaseStatus
from foundryflow.store.usecase import UseCaseDeployment

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds; the seed's target is a deployment in under two minutes."""

EXECUTION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Seconds, for pipeline executions: from a quick API pipeline to an hour-long matrix."""

STALE_AFTER: timedelta = inspect.signature(reset_stale).parameters["older_than"].default
"""``reset_stale``'s default lease: a running config without a heartbeat for this long."""

RECONCILE_JOB = "redis_reconcile"
"""``foundryflow.ops.redis_reconcile.JOB``, not imported: the API would load the guardrail
actions just to read one string."""

METRIC_NAMES: frozenset[str] = frozenset(
    {
        # sources
        "foundryflow_database_up",
        "foundryflow_redis_up",
        "foundryflow_redis_memory_used_bytes",
        "foundryflow_redis_memory_max_bytes",
        # pipeline deployments (seed 001)
        "foundryflow_deployment_total",
        "foundryflow_deployment_duration_seconds_bucket",
        "foundryflow_deployment_duration_seconds_sum",
        "foundryflow_deployment_duration_seconds_count",
        "foundryflow_deployment_errors_total",
        # benchmark matrix
        "foundryflow_matrix_configs",
        "foundryflow_matrix_claims_total",
        "foundryflow_matrix_results_total",
        "foundryflow_matrix_stale_configs",
        # executions
        "foundryflow_executions_total",
        "foundryflow_execution_duration_seconds_bucket",
        "foundryflow_execution_duration_seconds_sum",
        "foundryflow_execution_duration_seconds_count",
        "foundryflow_step_failures_total",
        # Redis sync and maintenance runs
        "foundryflow_redis_sync_latency_seconds",
        "foundryflow_redis_config_drift",
        "foundryflow_ops_last_run_timestamp_seconds",
        "foundryflow_ops_runs_total",
        # use cases
        "foundryflow_usecase_deployments",
    }
)
"""Every sample name the exposition can hold, spelled as PromQL uses them: counters with
``_total``, histograms as ``_bucket``, ``_sum`` and ``_count``."""

_FINISHED = (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)


class FamilyGroup(Protocol):
    """Families read from PostgreSQL with one query (or two), in a session given."""

    def families(self, session: Session) -> Iterable[Metric]: ...


def _histogram(
    histogram: HistogramMetricFamily,
    labels: Sequence[str],
    bounds: Sequence[float],
    cumulative: Sequence[int],
    count: int,
    seconds: float,
) -> None:
    buckets = [(str(b), c) for b, c in zip(bounds, cumulative, strict=True)]
    histogram.add_metric(list(labels), [*buckets, ("+Inf", count)], seconds)


class DeploymentCollector(Collector):
    """Seed 001's ``deployment_total`` by status, ``deployment_duration_seconds`` and
    ``deployment_errors_total``, for pipeline deployments. Registered as a family group of
    :class:`DatabaseCollector`; collecting it alone reads the database by itself."""

    def collect(self) -> Iterator[Metric]:
        with session_scope() as session:
            families = list(self.families(session))
        yield from families

    def families(self, session: Session) -> Iterable[Metric]:
        by_status = dict(
            session.execute(
                select(PipelineDeployment.status, func.count()).group_by(PipelineDeployment.status)
            ).all()
        )
        durations = session.execute(
            select(
                PipelineDeploymentRevision.action,
                func.count(),
                func.coalesce(func.sum(PipelineDeploymentRevision.duration_seconds), 0.0),
                *(
                    func.count().filter(PipelineDeploymentRevision.duration_seconds <= bound)
                    for bound in DURATION_BUCKETS
                ),
            ).group_by(PipelineDeploymentRevision.action)
        ).all()
        errors = dict(
            session.execute(
                select(PipelineDeploymentRevision.action, func.count())
                .where(PipelineDeploymentRevision.outcome == RevisionOutcome.FAILED)
                .group_by(PipelineDeploymentRevision.action)
            ).all()
        )
        total = GaugeMetricFamily(
            "foundryflow_deployment_total", "Pipeline deployments by status.", labels=["status"]
        )
        for status in DeploymentStatus:
            total.add_metric([status.value], by_status.get(status, 0))
        histogram = HistogramMetricFamily(
            "foundryflow_deployment_duration_seconds",
            "Time to carry out a pipeline deployment change on the cluster.",
            labels=["action"],
        )
        for action, count, seconds, *cumulative in durations:
            _histogram(histogram, [action.value], DURATION_BUCKETS, cumulative, count, seconds)
        failures = CounterMetricFamily(
            "foundryflow_deployment_errors",
            "Pipeline deployment changes the cluster refused, by action.",
            labels=["action"],
        )
        for action, count in errors.items():
            failures.add_metric([action.value], count)
        return [total, histogram, failures]


class MatrixFamilies:
    """The benchmark matrix by model version: configs by status, claims, results, stale."""

    def families(self, session: Session) -> Iterable[Metric]:
        config, result = BenchmarkConfig, BenchmarkResult
        stale = and_(
            config.status == ConfigStatus.RUNNING,
            config.heartbeat_at < func.now() - STALE_AFTER,
        )
        # at most one result per config (uq_benchmark_results_config): the join keeps counts
        rows = session.execute(
            select(
                config.model_version_id,
                config.status,
                func.count(config.id),
                func.coalesce(func.sum(config.attempts), 0),
                func.count(result.id),
                func.count().filter(stale),
            )
            .outerjoin(result, result.config_id == config.id)
            .group_by(config.model_version_id, config.status)
        ).all()
        by_version: dict[int, dict[str, int]] = {}
        for version, status, config_count, claim_count, result_count, stale_count in rows:
            figures = by_version.setdefault(version, {"claims": 0, "results": 0, "stale": 0})
            figures[ConfigStatus(status).value] = config_count
            figures["claims"] += int(claim_count)
            figures["results"] += result_count
            figures["stale"] += stale_count
        configs_family = GaugeMetricFamily(
            "foundryflow_matrix_configs",
            "Benchmark matrix configs by model version and status.",
            labels=["model_version", "status"],
        )
        claims = CounterMetricFamily(
            "foundryflow_matrix_claims",
            "Claims of matrix configs by workers (attempts), by model version.",
            labels=["model_version"],
        )
        results = CounterMetricFamily(
            "foundryflow_matrix_results",
            "Benchmark results recorded for matrix configs, by model version.",
            labels=["model_version"],
        )
        stale_family = GaugeMetricFamily(
            "foundryflow_matrix_stale_configs",
            f"Running matrix configs without a heartbeat for {STALE_AFTER} (reset_stale's "
            "default), by model version.",
            labels=["model_version"],
        )
        for version, figures in sorted(by_version.items()):
            label = str(version)
            for status in ConfigStatus:
                configs_family.add_metric([label, status.value], figures.get(status.value, 0))
            claims.add_metric([label], figures["claims"])
            results.add_metric([label], figures["results"])
            stale_family.add_metric([label], figures["stale"])
        return [configs_family, claims, results, stale_family]


class ExecutionFamilies:
    """Executions by pipeline and status, their durations, and failed steps."""

    def families(self, session: Session) -> Iterable[Metric]:
        seconds = func.extract("epoch", Execution.finished_at - Execution.started_at)
        finished = and_(Execution.finished_at.is_not(None), Execution.status.in_(_FINISHED))
        rows = session.execute(
            select(
                Execution.pipeline,
                Execution.status,
                func.count(),
                func.count().filter(finished),
                func.coalesce(func.sum(seconds).filter(finished), 0),
                *(
                    func.count().filter(and_(finished, seconds <= bound))
                    for bound in EXECUTION_BUCKETS
                ),
            ).group_by(Execution.pipeline, Execution.status)
        ).all()
        step_failures = session.execute(
            select(StepRun.pipeline, StepRun.step_id, func.count())
            .where(StepRun.status == StepStatus.FAILED, StepRun.map_index == -1)
            .group_by(StepRun.pipeline, StepRun.step_id)
        ).all()
        total = CounterMetricFamily(
            "foundryflow_executions",
            "Pipeline executions by pipeline and status (a running one moves on to its final "
            "status).",
            labels=["pipeline", "status"],
        )
        durations: dict[str, list[float]] = {}
        for pipeline, status, count, done, spent, *cumulative in rows:
            total.add_metric([pipeline, ExecutionStatus(status).value], count)
            figures = durations.setdefault(pipeline, [0.0] * (len(EXECUTION_BUCKETS) + 2))
            for index, value in enumerate([done, spent, *cumulative]):
                figures[index] += float(value)
        histogram = HistogramMetricFamily(
            "foundryflow_execution_duration_seconds",
            "Duration of finished executions (completed, failed or cancelled), by pipeline.",
            labels=["pipeline"],
        )
        for pipeline, (finished_count, seconds_sum, *bucket_counts) in sorted(durations.items()):
            if finished_count:
                counts = [int(c) for c in bucket_counts]
                _histogram(
                    histogram,
                    [pipeline],
                    EXECUTION_BUCKETS,
                    counts,
                    int(finished_count),
                    seconds_sum,
                )
        failures = CounterMetricFamily(
            "foundryflow_step_failures",
            "Failed steps by pipeline and step (a fan-out step once, not per item).",
            labels=["pipeline", "step"],
        )
        for pipeline, step, count in step_failures:
            failures.add_metric([pipeline, step], count)
        return [total, histogram, failures]


class OpsFamilies:
    """Maintenance runs (``ops_runs``) and the Redis sync figures of the last reconcile."""

    def families(self, session: Session) -> Iterable[Metric]:
        runs = session.execute(
            select(OpsRun.job, OpsRun.outcome, func.count(), func.max(OpsRun.finished_at))
            .group_by(OpsRun.job, OpsRun.outcome)
            .order_by(OpsRun.job, OpsRun.outcome)
        ).all()
        reconciled: dict[str, Any] | None = session.scalars(
            select(OpsRun.details)
            .where(OpsRun.job == RECONCILE_JOB, OpsRun.details["missing"].is_not(None))
            .order_by(OpsRun.started_at.desc(), OpsRun.id.desc())
            .limit(1)
        ).first()
        total = CounterMetricFamily(
            "foundryflow_ops_runs",
            "Maintenance job runs by job and outcome.",
            labels=["job", "outcome"],
        )
        last = GaugeMetricFamily(
            "foundryflow_ops_last_run_timestamp_seconds",
            "When the last run of each maintenance job with each outcome finished.",
            labels=["job", "outcome"],
        )
        for job, outcome, count, finished_at in runs:
            labels = [job, str(getattr(outcome, "value", outcome))]
            total.add_metric(labels, count)
            last.add_metric(labels, finished_at.timestamp())
        latency = GaugeMetricFamily(
            "foundryflow_redis_sync_latency_seconds",
            "Latency of the Redis writes of the last guardrail config reconcile.",
            labels=["stat"],
        )
        drift = GaugeMetricFamily(
            "foundryflow_redis_config_drift",
            "Guardrail configs missing or drifted in Redis at the last reconcile.",
        )
        if reconciled is not None:
            for stat in ("mean", "max"):
                value = reconciled.get(f"write_latency_{stat}_seconds")
                if value is not None:
                    latency.add_metric([stat], float(value))
            drift.add_metric([], int(reconciled["missing"]) + int(reconciled.get("drifted", 0)))
        return [total, last, latency, drift]


class UseCaseFamilies:
    """Use-case deployments by status."""

    def families(self, session: Session) -> Iterable[Metric]:
        counts = dict(
            session.execute(
                select(UseCaseDeployment.status, func.count()).group_by(UseCaseDeployment.status)
            ).all()
        )
        family = GaugeMetricFamily(
            "foundryflow_usecase_deployments", "Use-case deployments by status.", labels=["status"]
        )
        for status in UseCaseStatus:
            family.add_metric([status.value], counts.get(status, 0))
        return [family]


def default_groups() -> list[FamilyGroup]:
    return [
        DeploymentCollector(),
        MatrixFamilies(),
        ExecutionFamilies(),
        OpsFamilies(),
        UseCaseFamilies(),
    ]


class DatabaseCollector(Collector):
    """``foundryflow_database_up`` and every family read from PostgreSQL, in one session.

    The database is asked ``SELECT 1`` first; when that fails (down, refused, not
    configured) only ``foundryflow_database_up 0`` is exposed.
    """

    def __init__(
        self,
        groups: Sequence[FamilyGroup] | None = None,
        sessions: Callable[[], Callable[[], Session]] | None = None,
    ) -> None:
        self.groups = list(groups) if groups is not None else default_groups()
        self._sessions = sessions

    def _session(self) -> Session:
        # looked up at scrape time: settings are read once the process is configured
        factory = self._sessions or session_factory
        return factory()()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "foundryflow_database_up", "Whether PostgreSQL answered this scrape (1) or not (0)."
        )
        try:
            session = self._session()
        except Exception as exc:  # not configured
            log.warning("metrics: no database: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        try:
            try:
                session.execute(text("SELECT 1"))
            except Exception as exc:
                log.warning("metrics: database unreachable: %s", exc)
                up.add_metric([], 0)
                yield up
                return
            up.add_metric([], 1)
            yield up
            for group in self.groups:
                try:
                    families = list(group.families(session))
                except Exception as exc:
                    log.warning("metrics: %s failed: %s", type(group).__name__, exc)
                    session.rollback()
                    continue
                yield from families
        finally:
            session.close()


class RedisCollector(Collector):
    """``foundryflow_redis_up`` and Redis memory (``INFO memory``) of
    ``FOUNDRYFLOW_REDIS_URL``; ``maxmemory`` 0 means no limit."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "foundryflow_redis_up", "Whether Redis answered this scrape (1) or not (0)."
        )
        try:
            info = get_redis(get_settings().redis_url).info("memory")
        except Exception as exc:  # down, refused, timed out or not configured
            log.warning("metrics: Redis unreachable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        used = GaugeMetricFamily(
            "foundryflow_redis_memory_used_bytes", "Memory Redis uses (INFO used_memory)."
        )
        used.add_metric([], float(info.get("used_memory", 0)))
        yield used
        limit = GaugeMetricFamily(
            "foundryflow_redis_memory_max_bytes",
            "Redis's memory limit (INFO maxmemory); 0 means no limit.",
        )
        limit.add_metric([], float(info.get("maxmemory", 0)))
        yield limit


def registry() -> CollectorRegistry:
    """A registry of the platform's collectors (no process metrics: the API server has
    its own, and they would describe whichever process answered the scrape)."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(DatabaseCollector())
    collectors.register(RedisCollector())
    return collectors
