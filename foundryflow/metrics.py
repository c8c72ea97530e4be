"""Prometheus metrics of the platform, served by the Airflow plugin at ``/metrics``.

Collected from PostgreSQL at scrape time rather than counted in memory: actions run in
Airflow workers, Argo pods and runner pools, so no single process sees every event, while
the database records all of them. A scrape costs a few aggregate queries on indexed tables.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from foundryflow.store.db import session_scope
from foundryflow.store.pipeline_deployment import (
    DeploymentStatus,
    PipelineDeployment,
    PipelineDeploymentRevision,
    RevisionOutcome,
)

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds; the seed's target is a deployment in under two minutes."""


class DeploymentCollector(Collector):
    """Seed 001's ``deployment_total`` by status, ``deployment_duration_seconds`` and
    ``deployment_errors_total``, for pipeline deployments."""

    def collect(self) -> Iterator[Metric]:
        with session_scope() as session:
            by_status = dict(
                session.execute(
                    select(PipelineDeployment.status, func.count()).group_by(
                        PipelineDeployment.status
                    )
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
        yield total
        histogram = HistogramMetricFamily(
            "foundryflow_deployment_duration_seconds",
            "Time to carry out a pipeline deployment change on the cluster.",
            labels=["action"],
        )
        for action, count, seconds, *cumulative in durations:
            buckets = [(str(b), c) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)]
            histogram.add_metric([action.value], [*buckets, ("+Inf", count)], float(seconds))
        yield histogram
        failures = CounterMetricFamily(
            "foundryflow_deployment_errors",
            "Pipeline deployment changes the cluster refused, by action.",
            labels=["action"],
        )
        for action, count in errors.items():
            failures.add_metric([action.value], count)
        yield failures


def registry() -> CollectorRegistry:
    """A registry of the platform's collectors (no process metrics: the API server has
    its own, and they would describe whichever process answered the scrape)."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(DeploymentCollector())
    return collectors
