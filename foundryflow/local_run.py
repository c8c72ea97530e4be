"""``foundryflow run``: one pipeline run through real Airflow (``dag.test()``), headless.

The DAG run executes in this process; a background thread follows the execution in
PostgreSQL and draws its progress, so what the user sees is the same record the Airflow
plugin and ``executions show`` read, whichever engine ran it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from sqlalchemy import select

from foundryflow.spec.model import Pipeline

POLL_SECONDS = 0.5


def _find_execution(pipeline: str, since: datetime) -> UUID | None:
    from foundryflow.store.db import session_scope
    from foundryflow.store.models import Execution

    with session_scope() as session:
        return session.scalars(
            select(Execution.id)
            .where(Execution.pipeline == pipeline, Execution.engine == "airflow")
            .where(Execution.created_at >= since)
            .order_by(Execution.created_at.desc())
            .limit(1)
        ).first()


def _view(report: Any) -> Group:
    from foundryflow.cli import render_progress

    return Group(
        ProgressBar(total=100, completed=report.percent, width=60), render_progress(report)
    )


def _configure_orm() -> None:
    """Configure every SQLAlchemy mapper (Airflow's and ours) before the follower starts.

    Mapper configuration takes a global lock on first use; when the follower's first query
    and dag.test()'s first query race to configure, the run can hang. Doing it once here,
    in the main thread, leaves nothing to race for.
    """
    from airflow.models import import_all_models
    from sqlalchemy.orm import configure_mappers

    import foundryflow.store.models  # noqa: F401  (registers our mappers)

    import_all_models()
    configure_mappers()


def run_pipeline(
    pipeline: Pipeline,
    params: dict[str, Any],
    console: Console,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> bool:
    """Run ``pipeline`` with ``params``; True when the execution completed.

    ``prepare`` runs once the platform is up (database migrated), before the run, and
    returns the params to run with: e.g. to record a use-case deployment the run adopts.
    """
    from foundryflow.platform import platform

    with platform() as _:
        if prepare is not None:
            params = prepare(params)
        from foundryflow.compile.airflow import build_dag
        from foundryflow.runtime import progress

        dag = build_dag(pipeline)
        _configure_orm()
        since = datetime.now(UTC)
        done = threading.Event()
        found: list[UUID] = []

        def follow(live: Live) -> None:
            # Airflow's task runner installs signal handlers, so dag.test() owns the main
            # thread and the progress view follows from here.
            while not done.wait(POLL_SECONDS):
                if not found and (execution_id := _find_execution(pipeline.name, since)):
                    found.append(execution_id)
                if found:
                    live.update(_view(progress(found[0])))

        state = "not started"
        with Live(console=console, refresh_per_second=4) as live:
            follower = threading.Thread(target=follow, args=(live,), name="progress", daemon=True)
            follower.start()
            try:
                state = str(dag.test(run_conf=params).state)
            finally:
                done.set()
                follower.join()
            if not found and (execution_id := _find_execution(pipeline.name, since)):
                found.append(execution_id)
            if found:
                live.update(_view(progress(found[0])))
        execution_id = found[0] if found else None
        if execution_id is None:
            console.print(f"[red]the run never started (DAG run {state}); see the log above")
            return False
        report = progress(execution_id)
        if report.error:
            console.print(f"[red]{report.error}[/]", highlight=False)
        if report.outputs:
            console.print_json(data=report.outputs)
        console.print(
            f"execution {report.id}: [bold]{report.status}[/] "
            f"(Airflow DAG run {state}); "
            f"details: foundryflow executions show {report.id}"
        )
        return report.status == "COMPLETED" and state == "success"
