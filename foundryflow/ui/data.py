"""What the progress pages show, read from PostgreSQL: executions (either engine) and the
benchmark matrix. Plain data, no HTML, so the JSON twins of the pages return the same.

Execution progress is :func:`foundryflow.runtime.progress`; the matrix's counts, completion
rate and ETA are :func:`foundryflow.benchmark.queue.progress`; "stale" is the rule of
``reset_stale``'s default (:data:`foundryflow.metrics.STALE_AFTER`). This module adds only
what those do not have: listings, claim rates, stale rows and the timeline.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast
from uuid import UUID

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import Session

from foundryflow.benchmark import queue
from foundryflow.benchmark.matrix import ModelVersionNotFoundError
from foundryflow.metrics import STALE_AFTER
from foundryflow.store.catalog import (
    BenchmarkConfig,
    ConfigStatus,
    HardwareConfig,
    InferenceFramework,
    Model,
    ModelVersion,
)
from foundryflow.store.db import get_engine, session_scope
from foundryflow.store.models import Execution, ExecutionStatus, StepRun, StepStatus

__all__ = [
    "CLAIM_WINDOW",
    "MAX_POINTS",
    "STALE_AFTER",
    "ExecutionRow",
    "ExecutionsPage",
    "MatrixDetail",
    "MatrixSummary",
    "Timeline",
    "TimelinePoint",
    "execution_for_airflow_run",
    "list_executions",
    "list_matrices",
    "matrix_detail",
    "timeline",
]

CLAIM_WINDOW = timedelta(minutes=10)
"""Window of the claim rate, and of the completion rate (``queue.progress``'s default)."""

MAX_POINTS = 120
"""At most this many buckets on the timeline: the bucket width adapts to the time span."""

NICE_SECONDS = (
    *(1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200),
    *(86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400),
)
"""Round durations in seconds: timeline bucket widths and the plot's time-axis ticks."""
"""Candidate bucket widths in seconds: the smallest giving at most MAX_POINTS buckets."""

UNFINISHED = (StepStatus.PENDING, StepStatus.RUNNING)


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


# --- executions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionRow:
    """One execution in the listing, with how many of its steps finished."""

    id: UUID
    pipeline: str
    version: str
    engine: str
    engine_run_id: str
    status: str
    error: str | None
    rollback_status: str | None
    started_at: datetime
    finished_at: datetime | None
    steps_done: int
    steps_total: int

    @property
    def percent(self) -> float:
        return round(100.0 * self.steps_done / self.steps_total, 1) if self.steps_total else 100.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = str(self.id)
        data["percent"] = self.percent
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass(frozen=True)
class ExecutionsPage:
    rows: list[ExecutionRow]
    pipelines: list[str]
    """Every pipeline with an execution, for the filter."""
    engines: list[str]
    status_counts: dict[str, int]
    """Executions by status under the pipeline/engine filters (not the status filter)."""
    has_more: bool


def list_executions(
    pipeline: str | None = None,
    status: ExecutionStatus | None = None,
    engine: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> ExecutionsPage:
    """Newest first, whichever engine ran them; the step counts come from one aggregate."""
    filters = []
    if pipeline:
        filters.append(Execution.pipeline == pipeline)
    if engine:
        filters.append(Execution.engine == engine)
    query = (
        select(Execution)
        .where(*filters, *([Execution.status == status] if status else []))
        .order_by(Execution.created_at.desc(), Execution.id)
        .limit(limit + 1)
        .offset(offset)
    )
    with session_scope() as session:
        executions = list(session.scalars(query))
        has_more = len(executions) > limit
        executions = executions[:limit]
        steps = _step_counts(session, [e.id for e in executions])
        pipelines = list(
            session.scalars(select(Execution.pipeline).distinct().order_by(Execution.pipeline))
        )
        engines = list(
            session.scalars(select(Execution.engine).distinct().order_by(Execution.engine))
        )
        counts = {
            ExecutionStatus(s).value: n
            for s, n in session.execute(
                select(Execution.status, func.count()).where(*filters).group_by(Execution.status)
            )
        }
        rows = [
            ExecutionRow(
                id=e.id,
                pipeline=e.pipeline,
                version=e.version,
                engine=e.engine,
                engine_run_id=e.engine_run_id,
                status=e.status.value,
                error=e.error,
                rollback_status=e.rollback_status.value if e.rollback_status else None,
                started_at=e.started_at,
                finished_at=e.finished_at,
                steps_done=steps.get(e.id, (0, 0))[0],
                steps_total=steps.get(e.id, (0, 0))[1],
            )
            for e in executions
        ]
    return ExecutionsPage(
        rows=rows,
        pipelines=pipelines,
        engines=engines,
        status_counts={s.value: counts.get(s.value, 0) for s in ExecutionStatus},
        has_more=has_more,
    )


def _step_counts(session: Session, ids: list[UUID]) -> dict[UUID, tuple[int, int]]:
    """(finished, all) steps per execution: the steps' own rows, as ``progress`` counts."""
    if not ids:
        return {}
    rows = session.execute(
        select(
            StepRun.execution_id,
            func.count().filter(StepRun.status.not_in(UNFINISHED)),
            func.count(),
        )
        .where(StepRun.execution_id.in_(ids), StepRun.map_index == -1)
        .group_by(StepRun.execution_id)
    )
    return {execution_id: (done, total) for execution_id, done, total in rows}


def execution_for_airflow_run(dag_id: str, run_id: str) -> UUID | None:
    """The execution an Airflow DAG run recorded (``engine_run_id`` is ``dag_id/run_id``,
    see ``operators/_execution.run_key``), or None if it has none (yet)."""
    with session_scope() as session:
        return session.scalars(
            select(Execution.id).where(
                Execution.engine == "airflow", Execution.engine_run_id == f"{dag_id}/{run_id}"
            )
        ).one_or_none()


# --- the benchmark matrix -----------------------------------------------------------------


@dataclass(frozen=True)
class MatrixSummary:
    """One model version's matrix in the listing."""

    model_version_id: int
    model_uri: str
    version: str
    dtype: str
    pending: int
    running: int
    completed: int
    failed: int
    stale: int
    last_activity: datetime | None

    @property
    def total(self) -> int:
        return self.pending + self.running + self.completed + self.failed

    @property
    def percent(self) -> float:
        """As ``queue.progress``: the share in a final state (completed or failed)."""
        return 100.0 * (self.completed + self.failed) / self.total if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.pending + self.running > 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data |= {"total": self.total, "percent": self.percent, "active": self.active}
        data["last_activity"] = self.last_activity.isoformat() if self.last_activity else None
        return data


def _stale() -> Any:
    return and_(
        BenchmarkConfig.status == ConfigStatus.RUNNING,
        BenchmarkConfig.heartbeat_at < func.now() - STALE_AFTER,
    )


def list_matrices() -> list[MatrixSummary]:
    """Every model version with a matrix: the ones with work left first, then the most
    recently active."""
    config = BenchmarkConfig
    counts = [
        func.count().filter(config.status == status).label(status.value) for status in ConfigStatus
    ]
    query = (
        select(
            config.model_version_id,
            Model.uri,
            ModelVersion.version,
            ModelVersion.dtype,
            *counts,
            func.count().filter(_stale()),
            func.max(func.greatest(config.updated_at, config.claimed_at, config.completed_at)),
        )
        .join(ModelVersion, ModelVersion.id == config.model_version_id)
        .join(Model, Model.id == ModelVersion.model_id)
        .group_by(config.model_version_id, Model.uri, ModelVersion.version, ModelVersion.dtype)
    )
    with session_scope() as session:
        rows = session.execute(query).all()
    summaries = []
    for row in rows:
        version_id, uri, version, dtype, pending, running, completed, failed, stale, last = row
        summaries.append(
            MatrixSummary(
                model_version_id=version_id,
                model_uri=uri,
                version=version,
                dtype=dtype,
                pending=pending,
                running=running,
                completed=completed,
                failed=failed,
                stale=stale,
                last_activity=_utc(cast(datetime | None, last)),
            )
        )
    epoch = datetime.min.replace(tzinfo=UTC)
    summaries.sort(key=lambda s: (s.active, s.last_activity or epoch), reverse=True)
    return summaries


class _Cell(NamedTuple):
    id: int
    hardware: str
    framework: str
    workload_type: str
    batch_size: int
    sequence_length: int


@dataclass(frozen=True)
class StaleRow:
    id: int
    hardware: str
    framework: str
    workload_type: str
    batch_size: int
    sequence_length: int
    claimed_by: str | None
    claimed_at: datetime | None
    heartbeat_at: datetime | None
    attempts: int


@dataclass(frozen=True)
class FailedRow:
    id: int
    hardware: str
    framework: str
    workload_type: str
    batch_size: int
    sequence_length: int
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class MatrixDetail:
    """One model version's matrix: ``queue.progress`` plus claims and stale rows."""

    model_version_id: int
    model_uri: str
    version: str
    dtype: str
    progress: queue.MatrixProgress
    claims_in_window: int
    """Configs whose current claim began in the last CLAIM_WINDOW (see claim_rate)."""
    claim_rate_per_minute: float
    """claims_in_window per minute of the window, or of the time since the first of them
    when that is shorter (at least a second): the rule ``queue.progress`` applies to
    completions. Only a config's latest claim is on record (a re-queued config's
    ``claimed_at`` is cleared), so a claim that failed and went back to the queue in the
    window is not counted."""
    claims_total: int
    """Every claim ever made (sum of ``attempts``; what ``foundryflow_matrix_claims_total``
    exports)."""
    stale_count: int
    stale_rows: list[StaleRow]
    """The oldest of them (at most ``limit``)."""
    failures: list[FailedRow]
    """The most recent configs with an error: failed for good, or re-queued after one."""
    window_minutes: float = field(default=CLAIM_WINDOW.total_seconds() / 60)
    stale_after_seconds: float = field(default=STALE_AFTER.total_seconds())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for item in (*data["stale_rows"], *data["failures"]):
            for key, value in item.items():
                if isinstance(value, datetime):
                    item[key] = value.isoformat()
        return data


_CLAIMS = text(
    """
    SELECT count(*) FILTER (WHERE claimed_at >= now() - :window),
           extract(epoch FROM least(
               CAST(:window AS interval),
               now() - min(claimed_at) FILTER (WHERE claimed_at >= now() - :window)
           )),
           coalesce(sum(attempts), 0),
           count(*) FILTER (WHERE status = 'running' AND heartbeat_at < now() - :stale)
    FROM benchmark_configs
    WHERE model_version_id = :model_version_id
    """
)


def matrix_detail(model_version_id: int, limit: int = 50) -> MatrixDetail:
    """Raises ModelVersionNotFoundError for an unknown model version."""
    report = queue.progress(model_version_id, CLAIM_WINDOW)
    config = BenchmarkConfig
    with session_scope() as session:
        uri, version, dtype = session.execute(
            select(Model.uri, ModelVersion.version, ModelVersion.dtype)
            .join(ModelVersion.model)
            .where(ModelVersion.id == model_version_id)
        ).one()
        claims, span, claims_total, stale_count = session.execute(
            _CLAIMS,
            {"model_version_id": model_version_id, "window": CLAIM_WINDOW, "stale": STALE_AFTER},
        ).one()
        cell = (
            config.id,
            HardwareConfig.name.label("hardware"),
            InferenceFramework.name.label("framework"),
            config.workload_type,
            config.batch_size,
            config.sequence_length,
        )
        named = (
            select(*cell)
            .join(HardwareConfig, HardwareConfig.id == config.hardware_config_id)
            .join(InferenceFramework, InferenceFramework.id == config.framework_id)
            .where(config.model_version_id == model_version_id)
        )
        stale_rows: list[StaleRow] = []
        for *values, by, at, beat, attempts in session.execute(
            named.add_columns(
                config.claimed_by, config.claimed_at, config.heartbeat_at, config.attempts
            )
            .where(_stale())
            .order_by(config.heartbeat_at, config.id)
            .limit(limit)
        ):
            stale_rows.append(
                StaleRow(
                    **_Cell(*values)._asdict(),
                    claimed_by=by,
                    claimed_at=_utc(at),
                    heartbeat_at=_utc(beat),
                    attempts=attempts,
                )
            )
        failures: list[FailedRow] = []
        for *values, status, attempts, error, at in session.execute(
            named.add_columns(config.status, config.attempts, config.last_error, config.updated_at)
            .where((config.status == ConfigStatus.FAILED) | config.last_error.is_not(None))
            .order_by(config.updated_at.desc(), config.id)
            .limit(10)
        ):
            failures.append(
                FailedRow(
                    **_Cell(*values)._asdict(),
                    status=ConfigStatus(status).value,
                    attempts=attempts,
                    last_error=error,
                    updated_at=_utc(at),
                )
            )
    rate = claims / max(float(span or 0), 1.0) * 60 if claims else 0.0
    return MatrixDetail(
        model_version_id=model_version_id,
        model_uri=uri,
        version=version,
        dtype=dtype,
        progress=report,
        claims_in_window=claims,
        claim_rate_per_minute=rate,
        claims_total=int(claims_total),
        stale_count=stale_count,
        stale_rows=stale_rows,
        failures=failures,
    )


# --- the timeline -------------------------------------------------------------------------

SERIES = tuple(s.value for s in ConfigStatus)
"""pending, running, completed, failed: one series each, in this order."""

SERIES_MEANING = {
    "pending": "configs that existed (created_at) and were in none of the other three "
    "states; includes earlier attempts of configs that were retried, whose claims are not "
    "on record",
    "running": "configs whose latest claim (claimed_at) had begun and not yet ended "
    "(completed_at for completed and failed rows; still open for running rows); a lower "
    "bound when configs were retried, since only the latest claim of a config is kept",
    "completed": "configs completed by then (completed_at); exact",
    "failed": "configs failed for good by then (completed_at, else updated_at, of the rows "
    "failed now); exact. Attempts that failed and were retried are not failures",
}
"""What each series means, exactly; shown under the plot and returned by the JSON twin."""


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    pending: int
    running: int
    completed: int
    failed: int

    def count(self, status: str) -> int:
        value: int = getattr(self, status)
        return value


@dataclass(frozen=True)
class Timeline:
    """Counts by status at the end of each bucket, from the first config's creation to
    now (or to the last event, once nothing is pending or running). The first point is
    the start (nothing created yet) and the last equals the current counts."""

    model_version_id: int
    bucket_seconds: int
    points: list[TimelinePoint]

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version_id": self.model_version_id,
            "bucket_seconds": self.bucket_seconds,
            "series": list(SERIES),
            "meaning": SERIES_MEANING,
            "points": [
                {"at": p.at.isoformat(), **{s: p.count(s) for s in SERIES}} for p in self.points
            ],
        }


_SPAN = text(
    """
    SELECT min(created_at),
           max(greatest(created_at, claimed_at, completed_at, updated_at)),
           now(),
           count(*) FILTER (WHERE status IN ('pending', 'running'))
    FROM benchmark_configs
    WHERE model_version_id = :model_version_id
    """
)

_EVENTS = text(
    """
    SELECT floor(extract(epoch FROM e.at - :origin) / :step)::bigint AS bucket,
           sum(e.created), sum(e.running), sum(e.completed), sum(e.failed)
    FROM benchmark_configs c
    CROSS JOIN LATERAL (VALUES
        (c.created_at, 1, 0, 0, 0),
        (CASE WHEN c.status <> 'pending' THEN c.claimed_at END, 0, 1, 0, 0),
        (CASE WHEN c.status = 'completed' THEN c.completed_at END,
         0, CASE WHEN c.claimed_at IS NULL THEN 0 ELSE -1 END, 1, 0),
        (CASE WHEN c.status = 'failed' THEN coalesce(c.completed_at, c.updated_at) END,
         0, CASE WHEN c.claimed_at IS NULL THEN 0 ELSE -1 END, 0, 1)
    ) AS e (at, created, running, completed, failed)
    WHERE c.model_version_id = :model_version_id AND e.at IS NOT NULL
    GROUP BY bucket
    ORDER BY bucket
    """
)
"""Per bucket, the changes of each count: +1 created at created_at; a claim still on
record starts running at claimed_at; completion and final failure end it. One scan of the
version's rows, whatever the number of buckets."""


def bucket_seconds(span: timedelta, max_points: int = MAX_POINTS) -> int:
    """The smallest candidate width giving at most ``max_points`` buckets over ``span``."""
    seconds = max(span.total_seconds(), 1.0)
    for step in NICE_SECONDS:
        if seconds / step <= max_points:
            return step
    return math.ceil(seconds / max_points)


def timeline(model_version_id: int, max_points: int = MAX_POINTS) -> Timeline:
    """Counts by status over time (see SERIES_MEANING), derived from the rows' timestamps.

    Raises ModelVersionNotFoundError for an unknown model version; a version without
    configs has an empty timeline.
    """
    with get_engine().connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM model_versions WHERE id = :id"), {"id": model_version_id}
        ).first()
        if exists is None:
            raise ModelVersionNotFoundError(f"model version {model_version_id} does not exist")
        first, last, db_now, unfinished = conn.execute(
            _SPAN, {"model_version_id": model_version_id}
        ).one()
        if first is None:
            return Timeline(model_version_id, 0, [])
        end = db_now if unfinished or last is None else max(last, first)
        step = bucket_seconds(end - first, max_points)
        origin = datetime.fromtimestamp(math.floor(first.timestamp() / step) * step, tz=UTC)
        count = max(math.floor((end - origin).total_seconds() / step) + 1, 1)
        deltas = [[0, 0, 0, 0] for _ in range(count)]
        for bucket, created, running, completed, failed in conn.execute(
            _EVENTS, {"model_version_id": model_version_id, "origin": origin, "step": step}
        ):
            slot = deltas[min(max(int(bucket), 0), count - 1)]  # clocks may disagree a bit
            for i, value in enumerate((created, running, completed, failed)):
                slot[i] += int(value)
    points = [TimelinePoint(origin, 0, 0, 0, 0)]
    created = running = completed = failed = 0
    end = end.astimezone(UTC)
    for i, (d_created, d_running, d_completed, d_failed) in enumerate(deltas):
        created += d_created
        running += d_running
        completed += d_completed
        failed += d_failed
        at = min(origin + timedelta(seconds=step * (i + 1)), end)
        pending = created - running - completed - failed
        points.append(TimelinePoint(at, pending, running, completed, failed))
    return Timeline(model_version_id, step, points)
