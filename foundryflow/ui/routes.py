"""Progress pages (server-rendered HTML) and their JSON twins.

Mounted by the Airflow plugin at ``/foundryflow``, so the pages are
``/foundryflow/ui/executions[/{id}]`` and ``/foundryflow/ui/matrix[/{model_version_id}]``.
They read PostgreSQL only, so runs started from Argo show exactly like runs started from
Airflow.

The HTML routes parse their own path and query values: a malformed one gets a readable
422 page rather than FastAPI's JSON error (an app-wide handler would change the JSON
API's errors too).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlencode
from uuid import UUID

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.exc import OperationalError

from foundryflow.benchmark.matrix import ModelVersionNotFoundError
from foundryflow.runtime import ExecutionNotFoundError, progress
from foundryflow.store.db import DatabaseNotConfiguredError
from foundryflow.store.models import ExecutionStatus, StepStatus
from foundryflow.ui import data
from foundryflow.ui.svg import span_label, timeline_svg
from foundryflow.ui.templates import duration, render

log = logging.getLogger(__name__)

router = APIRouter(tags=["progress pages"])

EXECUTION_REFRESH_MS = 3000
"""An execution page refreshes this often while the execution runs."""
LIST_REFRESH_MS = 5000
MATRIX_REFRESH_MS = 5000
"""A matrix page refreshes this often while configs are pending or running."""
PAGE_SIZE = 50

STALE_AFTER_LABEL = span_label(data.STALE_AFTER.total_seconds())

P = ParamSpec("P")
R = TypeVar("R", bound=Response)


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def _error(
    code: int,
    heading: str,
    message: str,
    root: str,
    hint: str | None = None,
    refresh_ms: int = 0,
) -> HTMLResponse:
    page = render(
        "error.html",
        code=code,
        heading=heading,
        message=message,
        hint=hint,
        root=root,
        section="",
        refresh_ms=refresh_ms,
    )
    return _html(page, code)


def _root(depth: int) -> str:
    """The relative way from a page ``depth`` segments below ``ui/`` back to the mount."""
    return "../" * depth


def page(depth: int) -> Callable[[Callable[P, R]], Callable[P, R | HTMLResponse]]:
    """A page that answers 503 (as a page) when the database cannot be reached."""

    def decorate(handler: Callable[P, R]) -> Callable[P, R | HTMLResponse]:
        @functools.wraps(handler)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | HTMLResponse:
            try:
                return handler(*args, **kwargs)
            except (OperationalError, DatabaseNotConfiguredError) as exc:
                log.warning("progress page: database unavailable: %s", exc)
                return _error(
                    503,
                    "Database unavailable",
                    "foundryflow's PostgreSQL did not answer; the page will retry.",
                    _root(depth),
                    refresh_ms=10_000,
                )

        return wrapper

    return decorate


# --- executions ---------------------------------------------------------------------------


@router.get("/ui", include_in_schema=False)
def ui_root() -> RedirectResponse:
    return RedirectResponse("ui/executions")


@router.get("/ui/", include_in_schema=False)
def ui_index() -> RedirectResponse:
    return RedirectResponse("executions")


@router.get("/ui/executions", include_in_schema=False)
@page(depth=1)
def executions_page(
    pipeline: str = "", status: str = "", engine: str = "", offset: str = "0"
) -> HTMLResponse:
    root = _root(1)
    status = status.upper()
    if status and status not in ExecutionStatus.__members__:
        known = ", ".join(ExecutionStatus)
        return _error(422, "Unknown status", f"{status!r} is not one of {known}.", root)
    if not offset.isdigit():
        return _error(422, "Bad offset", f"offset must be a whole number, got {offset!r}.", root)
    start = int(offset)
    listing = data.list_executions(
        pipeline or None,
        ExecutionStatus(status) if status else None,
        engine or None,
        PAGE_SIZE,
        start,
    )

    def query(**changes: Any) -> str:
        values = {"pipeline": pipeline, "status": status, "engine": engine, "offset": start}
        values |= changes
        return urlencode({k: v for k, v in values.items() if v})

    running = any(r.status == ExecutionStatus.RUNNING for r in listing.rows)
    return _html(
        render(
            "executions.html",
            root=root,
            section="executions",
            page=listing,
            pipeline=pipeline,
            status=status,
            engine=engine,
            statuses=list(ExecutionStatus),
            offset=start,
            limit=PAGE_SIZE,
            query=query,
            refresh_ms=LIST_REFRESH_MS if running else 0,
        )
    )


def _eta(report: Any) -> tuple[str, str]:
    if report.status != ExecutionStatus.RUNNING:
        return "—", "finished" if report.finished_at else "not running"
    if report.eta_seconds is None:
        return "unknown", "a remaining step has no completed run in earlier executions"
    at = datetime.now(UTC) + timedelta(seconds=report.eta_seconds)
    return duration(report.eta_seconds), f"around {at:%H:%M:%S} UTC, from earlier runs"


def _airflow_href(engine: str, engine_run_id: str, root: str) -> str | None:
    """The DAG run in the Airflow UI, which serves ``dags/...`` beside ``foundryflow/``."""
    if engine != "airflow" or "/" not in engine_run_id:
        return None
    dag_id, run_id = engine_run_id.split("/", 1)
    return f"{root}../dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


@router.get("/ui/executions/{execution_id}", include_in_schema=False)
@page(depth=2)
def execution_page(execution_id: str) -> HTMLResponse:
    root = _root(2)
    try:
        parsed = UUID(execution_id)
    except ValueError:
        return _error(
            422,
            "Malformed execution id",
            f"{execution_id!r} is not an execution id: ids are UUIDs such as "
            "8f14e45f-ceea-467f-a0c6-3c2b9f1d2e4a.",
            root,
        )
    try:
        report = progress(parsed)
    except ExecutionNotFoundError:
        return _error(
            404,
            "Execution not found",
            f"No execution {parsed} is recorded.",
            root,
            hint="It was never started (its start task failed), or it was purged.",
        )
    steps = report.steps
    compensated = sorted(
        (s for s in steps if s.status == StepStatus.COMPENSATED),
        key=lambda s: s.finished_at or datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )
    eta, eta_note = _eta(report)
    running = report.status in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING)
    return _html(
        render(
            "execution.html",
            root=root,
            section="executions",
            p=report,
            eta=eta,
            eta_note=eta_note,
            compensated=[s.id for s in compensated],
            compensation_errors=[s for s in steps if s.compensation_error],
            airflow_href=_airflow_href(report.engine, report.engine_run_id, root),
            refresh_ms=EXECUTION_REFRESH_MS if running else 0,
        )
    )


@router.get("/ui/airflow-run", include_in_schema=False)
@page(depth=1)
def airflow_run_page(dag_id: str = "", run_id: str = "") -> Response:
    """Target of the Airflow UI's "foundryflow progress" tab of a DAG run: redirects to
    the execution that run recorded."""
    root = _root(1)
    if not dag_id or not run_id:
        return _error(422, "Missing DAG run", "Both dag_id and run_id are needed.", root)
    found = data.execution_for_airflow_run(dag_id, run_id)
    if found is None:
        return _error(
            404,
            "No foundryflow execution for this DAG run",
            f"DAG run {dag_id}/{run_id} has not recorded a foundryflow execution.",
            root,
            hint="Either the DAG is not a foundryflow pipeline, or the run's start task has "
            "not run yet (this page checks again every few seconds).",
            refresh_ms=LIST_REFRESH_MS,
        )
    return RedirectResponse(f"executions/{found}", headers={"Cache-Control": "no-store"})


# --- the benchmark matrix -----------------------------------------------------------------


@router.get("/ui/matrix", include_in_schema=False)
@page(depth=1)
def matrices_page() -> HTMLResponse:
    rows = data.list_matrices()
    return _html(
        render(
            "matrices.html",
            root=_root(1),
            section="matrix",
            rows=rows,
            stale_after=STALE_AFTER_LABEL,
            refresh_ms=MATRIX_REFRESH_MS * 2 if any(m.active for m in rows) else 0,
        )
    )


def _matrix_eta(eta_seconds: float | None, remaining: int) -> str:
    if not remaining:
        return "done"
    if eta_seconds is None:
        return "unknown"
    return duration(eta_seconds)


@router.get("/ui/matrix/{model_version_id}", include_in_schema=False)
@page(depth=2)
def matrix_page(model_version_id: str) -> HTMLResponse:
    root = _root(2)
    if not model_version_id.isdigit() or int(model_version_id) < 1:
        return _error(
            422,
            "Malformed model version id",
            f"{model_version_id!r} is not a model version id (a positive whole number).",
            root,
        )
    version = int(model_version_id)
    try:
        detail = data.matrix_detail(version)
        line = data.timeline(version)
    except ModelVersionNotFoundError:
        return _error(404, "Model version not found", f"No model version {version}.", root)
    report = detail.progress
    active = report.pending + report.running > 0
    return _html(
        render(
            "matrix.html",
            root=root,
            section="matrix",
            d=detail,
            p=report,
            series=data.SERIES,
            meaning=data.SERIES_MEANING,
            points=line.points,
            plot=timeline_svg(line) if line.points else None,
            bucket=span_label(line.bucket_seconds) if line.bucket_seconds else "",
            active=active,
            eta=_matrix_eta(report.eta_seconds, report.pending + report.running),
            stale_after=STALE_AFTER_LABEL,
            refresh_ms=MATRIX_REFRESH_MS if active else 0,
        )
    )


@router.get("/ui/{rest:path}", include_in_schema=False)
def unknown_page(rest: str) -> HTMLResponse:
    return _error(
        404, "Page not found", f"There is no progress page ui/{rest}.", _root(rest.count("/") + 1)
    )


# --- JSON twins ---------------------------------------------------------------------------


@router.get("/api/v1/matrix")
def matrices() -> list[dict[str, Any]]:
    """Every model version with a matrix: counts by status, stale configs, percent."""
    return [m.to_json() for m in data.list_matrices()]


@router.get("/api/v1/matrix/{model_version_id}")
def matrix(model_version_id: int) -> dict[str, Any]:
    """``queue.progress`` of the matrix, its claim rate and stale configs, recent errors."""
    try:
        return data.matrix_detail(model_version_id).to_json()
    except ModelVersionNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


@router.get("/api/v1/matrix/{model_version_id}/timeline")
def matrix_timeline(model_version_id: int, max_points: int = data.MAX_POINTS) -> dict[str, Any]:
    """Counts by status over time (what the page plots; ``meaning`` says what each series
    counts)."""
    if not 2 <= max_points <= 1000:
        raise HTTPException(status_code=422, detail="max_points must be 2 to 1000")
    try:
        return data.timeline(model_version_id, max_points).to_json()
    except ModelVersionNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
