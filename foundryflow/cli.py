"""The ``foundryflow`` command line.

User-facing commands (``up``, ``run``, ``validate``, ``executions show``) print for people;
engine-facing commands (``executions start|rollback|finish``, ``step run|fanout``) are what
Argo pods run, and print machine-readable output (``step fanout`` prints JSON on stdout).
Every error a user can cause exits non-zero with a message saying what to change.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from foundryflow.benchmark.cli import matrix_app
from foundryflow.config import REPO_ROOT
from foundryflow.pipeline_deployment.cli import pipeline_app
from foundryflow.sim.cli import simulate_command
from foundryflow.usecase.cli import usecase_app

if TYPE_CHECKING:
    from foundryflow.spec.model import Pipeline

app = typer.Typer(
    name="foundryflow",
    help="AI-platform pipelines written once, run natively on Airflow 3 and Argo Workflows.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="Migrate the foundryflow PostgreSQL schema (Alembic).", no_args_is_help=True
)
executions_app = typer.Typer(
    help="Inspect executions; start/rollback/finish them (Argo pods).", no_args_is_help=True
)
step_app = typer.Typer(
    help="Run one step the way an Airflow task or Argo pod does.", no_args_is_help=True
)
argo_app = typer.Typer(
    help="Render and lint the Argo WorkflowTemplates/CronWorkflows.", no_args_is_help=True
)
pipelines_app = typer.Typer(help="List pipeline specs.", no_args_is_help=True)
actions_app = typer.Typer(help="List registered actions.", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (executions_app, "executions"),
    (step_app, "step"),
    (argo_app, "argo"),
    (pipelines_app, "pipelines"),
    (actions_app, "actions"),
    (matrix_app, "matrix"),
    (usecase_app, "usecase"),
    (pipeline_app, "pipeline"),
):
    app.add_typer(sub, name=name)
app.command("simulate")(simulate_command)

console = Console()
err = Console(stderr=True)

PARAM_ENV_PREFIX = "FOUNDRYFLOW_PARAM_"
STATUS_STYLE = {
    "COMPLETED": "green",
    "RUNNING": "cyan",
    "PENDING": "dim",
    "SKIPPED": "yellow",
    "FAILED": "bold red",
    "COMPENSATED": "magenta",
    "CANCELLED": "yellow",
}


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


# --------------------------------------------------------------------------- specs
@app.command()
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Spec files; default: every configured spec.")
    ] = None,
) -> None:
    """Validate pipeline specs and report every problem with its file and step."""
    from foundryflow.spec.loader import PipelineCatalog, load_pipeline
    from foundryflow.spec.validate import SpecError

    problems: list[str] = []
    count = 0
    if paths:
        for path in paths:
            try:
                load_pipeline(path)
                count += 1
            except SpecError as exc:
                problems.extend(map(str, exc.problems))
    else:
        pipelines, found = PipelineCatalog().scan()
        count = len(pipelines)
        problems = [str(p) for p in found]
    for problem in problems:
        err.print(f"[red]✗[/] {problem}", highlight=False)
    if problems:
        raise fail(f"{len(problems)} problem(s); {count} spec(s) valid")
    console.print(f"[green]✓[/] {count} pipeline spec(s) valid")


@pipelines_app.command("list")
def pipelines_list() -> None:
    """Pipelines found in FOUNDRYFLOW_PIPELINES_PATH, with their steps and status."""
    from foundryflow.spec.loader import PipelineCatalog

    pipelines, problems = PipelineCatalog(require_actions=False).scan()
    table = Table("pipeline", "version", "steps", "on_failure", "schedule", "description")
    for p in sorted(pipelines.values(), key=lambda p: p.name):
        table.add_row(
            p.name,
            p.version,
            str(len(p.steps)),
            p.settings.on_failure,
            p.settings.schedule or "-",
            p.description,
        )
    console.print(table)
    for problem in problems:
        err.print(f"[red]✗[/] {problem}", highlight=False)


@actions_app.command("list")
def actions_list() -> None:
    """Actions registered through the ``foundryflow.actions`` entry points."""
    from foundryflow.actions import registry

    table = Table("action", "mode", "idempotent", "compensates", "description / status")
    for name in registry.names():
        reason = registry.status(name)
        if reason:
            table.add_row(name, "-", "-", "-", f"[yellow]{reason}[/]")
            continue
        action = registry.get(name)
        table.add_row(
            name,
            action.meta.execution_mode.value,
            "yes" if action.meta.idempotent else "no",
            "yes" if action.can_compensate() else "no",
            action.meta.description,
        )
    console.print(table)


# --------------------------------------------------------------------------- database
@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from foundryflow.store import migrate

    migrate.upgrade(revision)
    console.print(f"database at revision {migrate.current()}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base.")]) -> None:
    """Revert migrations down to REVISION."""
    from foundryflow.store import migrate

    migrate.downgrade(revision)
    console.print(f"database at revision {migrate.current()}")


@db_app.command("seed")
def db_seed(
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Also load demo guardrail providers, probes, rules and two clusters."
        ),
    ] = False,
) -> None:
    """Upsert the reference catalog (hardware, frameworks, use cases, models); idempotent."""
    from foundryflow.benchmark.seed import seed_catalog
    from foundryflow.guardrail.demo import seed_demo
    from foundryflow.store.db import session_scope

    with session_scope() as session:
        counts = seed_catalog(session)
        demo_counts = seed_demo(session) if demo else None
    console.print(
        f"catalog: {counts.hardware} hardware configs, {counts.frameworks} frameworks, "
        f"{counts.use_cases} use cases, {counts.models} models"
    )
    if demo_counts:
        console.print(
            f"demo: {demo_counts.providers} providers, {demo_counts.probes} probes, "
            f"{demo_counts.rules} rules, {demo_counts.clusters} clusters "
            f"({demo_counts.nodes} node pools)"
        )


@db_app.command("current")
def db_current() -> None:
    """Print the current schema revision."""
    from foundryflow.store import migrate

    console.print(migrate.current() or "empty (run `foundryflow db upgrade`)")


# --------------------------------------------------------------------------- executions
def _parse_uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise fail(f"{value!r} is not an execution id (a UUID)", 2) from None


def render_progress(report: Any) -> Table:
    """One table for a person: per-step status, the error, and a summary caption."""
    table = Table(title=f"{report.pipeline} v{report.version} · {report.id}", title_justify="left")
    for column in ("step", "action", "status", "attempt", "duration", "detail"):
        table.add_column(column)
    for step in report.steps:
        style = STATUS_STYLE.get(step.status, "")
        items = (
            f" {step.items_done}/{step.items_total} items" if step.items_total is not None else ""
        )
        duration = f"{step.duration_seconds:.1f}s" if step.duration_seconds is not None else ""
        detail = step.error or ""
        if step.compensation_error:
            detail += f" (compensation failed: {step.compensation_error})"
        table.add_row(
            step.name,
            step.action,
            f"[{style}]{step.status}[/]{items}",
            str(step.attempt),
            duration,
            detail,
        )
    eta = "-" if report.eta_seconds is None else f"{report.eta_seconds:.0f}s"
    caption = (
        f"{report.status} · {report.percent:.0f}% ({report.steps_done}/{report.steps_total} steps)"
        f" · ETA {eta} · engine {report.engine}"
    )
    if report.rollback_status:
        caption += f" · rollback {report.rollback_status}"
    table.caption = caption
    return table


@executions_app.command("show")
def executions_show(
    execution_id: Annotated[str, typer.Argument(help="Execution id (UUID).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Progress of one execution: per-step status, percent, ETA, errors, rollback."""
    from foundryflow.runtime import ExecutionNotFoundError, progress

    try:
        report = progress(_parse_uuid(execution_id))
    except ExecutionNotFoundError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return
    console.print(render_progress(report))
    if report.error:
        err.print(f"[red]{report.error}[/]", highlight=False)
    if report.outputs:
        console.print_json(data=report.outputs)


@executions_app.command("list")
def executions_list(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """Most recent executions, newest first."""
    from sqlalchemy import select

    from foundryflow.store.db import session_scope
    from foundryflow.store.models import Execution

    query = select(Execution).order_by(Execution.created_at.desc()).limit(limit)
    if pipeline:
        query = query.where(Execution.pipeline == pipeline)
    table = Table("id", "pipeline", "engine", "status", "started", "finished", "error")
    with session_scope() as session:
        for e in session.scalars(query):
            table.add_row(
                str(e.id),
                e.pipeline,
                e.engine,
                f"[{STATUS_STYLE.get(e.status.value, '')}]{e.status.value}[/]",
                f"{e.started_at:%Y-%m-%d %H:%M:%S}",
                f"{e.finished_at:%H:%M:%S}" if e.finished_at else "",
                (e.error or "")[:80],
            )
    console.print(table)


def _params_from_env(pipeline: Any) -> dict[str, Any]:
    """Argo hands parameters to the start pod as FOUNDRYFLOW_PARAM_<NAME> (never in a script)."""
    from foundryflow.spec.params import parse_text_value

    params: dict[str, Any] = {}
    for parameter in pipeline.parameters:
        text = os.environ.get(PARAM_ENV_PREFIX + parameter.name.upper())
        if text is None:
            continue
        value = parse_text_value(parameter, text)
        if value is not None:
            params[parameter.name] = value
    return params


@executions_app.command("start")
def executions_start(
    pipeline_name: Annotated[str, typer.Option("--pipeline", help="Pipeline name.")],
    engine: Annotated[str, typer.Option(help="Engine that runs it: argo, airflow, local.")],
    run_id: Annotated[str, typer.Option(help="The engine's run id (Argo: workflow name).")],
    execution_id: Annotated[
        str | None, typer.Option(help="Id to use (Argo: workflow uid).")
    ] = None,
    params_json: Annotated[
        str | None, typer.Option("--params", help="Params as JSON (else FOUNDRYFLOW_PARAM_*).")
    ] = None,
) -> None:
    """Validate params and record a new execution (the first task of every run)."""
    from foundryflow.runtime import start_execution
    from foundryflow.spec.params import ParamsError

    try:
        pipeline = _pipeline_to_start(pipeline_name)
        params = json.loads(params_json) if params_json else _params_from_env(pipeline)
        started = start_execution(
            pipeline,
            params,
            engine=engine,
            engine_run_id=run_id,
            execution_id=_parse_uuid(execution_id) if execution_id else None,
        )
    except (KeyError, ParamsError, ValueError) as exc:
        raise fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), 2) from None
    console.print(str(started))


def _pipeline_to_start(name: str) -> Pipeline:
    """The spec a one-off Workflow carries (``FOUNDRYFLOW_PIPELINE_SPEC``), else the named
    pipeline of the spec folders or of the use-case templates."""
    from foundryflow.compile.argo import PIPELINE_SPEC_ENV, decode_spec
    from foundryflow.spec.loader import PipelineCatalog, parse_pipeline
    from foundryflow.usecase.pipelines import PIPELINE_PREFIX, usecase_pipeline

    carried = os.environ.get(PIPELINE_SPEC_ENV)
    if carried:
        pipeline = parse_pipeline(decode_spec(carried), PIPELINE_SPEC_ENV, require_actions=False)
        if pipeline.name != name:
            raise ValueError(f"{PIPELINE_SPEC_ENV} holds pipeline {pipeline.name!r}, not {name!r}")
        return pipeline
    if name.startswith(PIPELINE_PREFIX):
        return usecase_pipeline(name)
    return PipelineCatalog(require_actions=False).get(name)


def _engine_failed(engine_status: str | None) -> bool:
    return engine_status not in (None, "", "Succeeded")


@executions_app.command("rollback")
def executions_rollback(
    execution_id: Annotated[str, typer.Option(help="Execution id.")],
    engine_status: Annotated[
        str | None, typer.Option(help="The engine's verdict, e.g. Argo {{workflow.status}}.")
    ] = None,
) -> None:
    """Compensate completed steps in reverse order if anything failed; else do nothing."""
    from foundryflow.runtime import rollback
    from foundryflow.store.models import RollbackStatus

    outcome = rollback(_parse_uuid(execution_id), _engine_failed(engine_status))
    if not outcome.needed:
        console.print("nothing failed: no rollback needed")
        return
    console.print(f"compensated: {', '.join(outcome.compensated) or 'nothing'}")
    if outcome.status == RollbackStatus.FAILED:
        raise fail("rollback incomplete: " + "; ".join(outcome.errors))


@executions_app.command("finish")
def executions_finish(
    execution_id: Annotated[str, typer.Option(help="Execution id.")],
    engine_status: Annotated[
        str | None, typer.Option(help="The engine's verdict, e.g. Argo {{workflow.status}}.")
    ] = None,
) -> None:
    """Record the final status and outputs; exits 1 if the execution failed."""
    from foundryflow.runtime import finish_execution
    from foundryflow.store.models import ExecutionStatus

    finished = finish_execution(
        _parse_uuid(execution_id),
        _engine_failed(engine_status),
        f"the engine reported {engine_status}" if engine_status else None,
    )
    console.print(f"execution {finished.status.value}")
    if finished.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        raise fail(finished.error or "execution failed")


@executions_app.command("cancel")
def executions_cancel(
    execution_id: Annotated[str, typer.Argument(help="Execution id.")],
    reason: Annotated[str, typer.Option(help="Recorded as the execution's error.")] = (
        "cancelled by a user"
    ),
) -> None:
    """Cancel a running execution on either engine: nothing new starts, and the rollback
    and closing steps run now, as after a failure."""
    from foundryflow.runtime import ExecutionNotFoundError, cancel_execution

    try:
        finished = cancel_execution(_parse_uuid(execution_id), reason)
    except ExecutionNotFoundError as exc:
        raise fail(str(exc), 2) from None
    console.print(f"execution {finished.status.value}: {finished.error or ''}", highlight=False)


# --------------------------------------------------------------------------- steps
@step_app.command("run")
def step_run(
    execution_id: Annotated[str, typer.Option(help="Execution id.")],
    step: Annotated[str, typer.Option(help="Step id.")],
    index: Annotated[int | None, typer.Option(help="Item index of a foreach step.", min=0)] = None,
) -> None:
    """Run one step against PostgreSQL; exits 1 if it failed, 0 if completed or skipped."""
    from foundryflow.runtime import ExecutionNotFoundError, run_step
    from foundryflow.runtime.steps import StepUsageError
    from foundryflow.store.models import StepStatus

    try:
        outcome = run_step(_parse_uuid(execution_id), step, index)
    except (StepUsageError, ExecutionNotFoundError) as exc:
        raise fail(str(exc), 2) from None
    label = step if index is None else f"{step}[{index}]"
    if outcome.status == StepStatus.FAILED:
        raise fail(f"step {label} failed: {outcome.error}")
    detail = f": {outcome.error}" if outcome.error else ""
    err.print(f"step {label} {outcome.status.value}{detail}", highlight=False)


@step_app.command("fanout")
def step_fanout(
    execution_id: Annotated[str, typer.Option(help="Execution id.")],
    step: Annotated[str, typer.Option(help="Step id of a foreach step.")],
) -> None:
    """Render a foreach step's items; prints the item indices as JSON (Argo withParam)."""
    from foundryflow.runtime import ExecutionNotFoundError, fanout, progress
    from foundryflow.runtime.steps import StepUsageError

    try:
        indices = fanout(_parse_uuid(execution_id), step)
    except (StepUsageError, ExecutionNotFoundError) as exc:
        raise fail(str(exc), 2) from None
    state = next(s for s in progress(_parse_uuid(execution_id)).steps if s.id == step)
    if state.status == "FAILED":
        raise fail(f"step {step} failed: {state.error}")
    print(json.dumps(indices))


# --------------------------------------------------------------------------- argo
@argo_app.command("render")
def argo_render(
    out: Annotated[Path, typer.Option(help="Folder for the YAML files.")] = REPO_ROOT / "argo",
) -> None:
    """Write one WorkflowTemplate (+ CronWorkflow if scheduled) per pipeline spec."""
    from foundryflow.compile.argo import render_all
    from foundryflow.spec.loader import PipelineCatalog

    written = render_all(PipelineCatalog(require_actions=False).load().values(), out)
    for path in written:
        console.print(f"wrote {path}")


@argo_app.command("lint")
def argo_lint(
    files: Annotated[list[Path], typer.Argument(help="Argo YAML files.")],
    schema: Annotated[Path | None, typer.Option(help="Argo JSON schema.")] = None,
) -> None:
    """Validate Argo YAML against the official schema (strict) and the semantic lint."""
    import yaml

    from foundryflow.compile.argo_lint import check_documents, load_schema

    loaded = load_schema(schema)
    problems: list[str] = []
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        problems.extend(f"{path}: {problem}" for problem in check_documents(docs, loaded))
    for problem in problems:
        err.print(f"[red]✗[/] {problem}", highlight=False)
    if problems:
        raise fail(f"{len(problems)} problem(s)")
    console.print(f"[green]✓[/] {len(files)} file(s) valid")


# --------------------------------------------------------------------------- platform
@app.command()
def up(
    port: Annotated[int, typer.Option(help="Port of the Airflow UI/API.")] = 8080,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Airflow.")] = 300,
) -> None:
    """Start the local platform: PostgreSQL, Redis, migrations and Airflow with our DAGs.

    Uses FOUNDRYFLOW_DATABASE_URL / FOUNDRYFLOW_REDIS_URL when set, else starts embedded
    throwaway services under .foundryflow/. Ctrl-C stops everything.
    """
    from foundryflow.platform import (
        AIRFLOW_USER,
        platform,
        start_airflow,
        stop_process_group,
        wait_for_airflow,
    )
    from foundryflow.spec.loader import PipelineCatalog
    from foundryflow.usecase.pipelines import scan as scan_usecases

    # Both stop everything. SIGINT is set too: a process started in the background by a
    # non-interactive shell (a CI job, `nohup ... &`) inherits it ignored, and Python leaves
    # an ignored SIGINT ignored, so Ctrl-C (or a supervisor's SIGINT) would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with platform(port) as (services, airflow, env):
        console.print(f"PostgreSQL  {services.database_url}")
        console.print(f"Redis       {services.redis_url}")
        pipelines, problems = PipelineCatalog(require_actions=False).scan()
        usecases, template_problems = scan_usecases()
        console.print(f"pipelines   {', '.join(sorted(pipelines)) or 'none'}")
        console.print(f"use cases   {', '.join(sorted(usecases)) or 'none'}")
        for problem in problems:
            err.print(f"[yellow]spec problem:[/] {problem}", highlight=False)
        for text in template_problems:
            err.print(f"[yellow]template problem:[/] {text}", highlight=False)
        log_file = airflow.home / "standalone.log"
        process = start_airflow(env, log_file)
        try:
            with console.status(
                "starting Airflow (api-server, scheduler, dag-processor, triggerer)…"
            ):
                wait_for_airflow(airflow, process, timeout)
            console.print(
                f"\n[bold green]Airflow is up:[/] {airflow.url}\n"
                f"login       {AIRFLOW_USER} / {airflow.password()}\n"
                f"logs        {log_file}\n"
                "Press Ctrl-C to stop everything.",
                highlight=False,
            )
            process.wait()
            raise fail(f"Airflow exited unexpectedly (code {process.returncode}); see {log_file}")
        except KeyboardInterrupt:
            console.print("stopping Airflow…")
        except (TimeoutError, RuntimeError) as exc:
            raise fail(f"{exc}; see {log_file}") from None
        finally:
            stop_process_group(process)
    console.print("stopped")


@app.command()
def run(
    pipeline_name: Annotated[str, typer.Argument(metavar="PIPELINE", help="Pipeline name.")],
    conf: Annotated[
        str, typer.Option(help="Run parameters: a JSON object, or the path of a JSON file.")
    ] = "{}",
) -> None:
    """Run one pipeline headless through Airflow (dag.test), with live progress.

    Exits non-zero if the run fails.
    """
    from foundryflow.local_run import run_pipeline
    from foundryflow.spec.loader import PipelineCatalog
    from foundryflow.spec.params import ParamsError, validate_run_params
    from foundryflow.spec.validate import SpecError

    try:
        params = json.loads(Path(conf).read_text() if Path(conf).is_file() else conf)
        pipeline = PipelineCatalog(require_actions=False).get(pipeline_name)
        validate_run_params(pipeline, params)
    except json.JSONDecodeError as exc:
        raise fail(f"--conf is not valid JSON: {exc}", 2) from None
    except KeyError as exc:
        raise fail(str(exc.args[0]), 2) from None
    except (ParamsError, SpecError) as exc:
        raise fail(str(exc), 2) from None
    ok = run_pipeline(pipeline, params, console)
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    """The console script: a missing database setting is a usage error, not a traceback."""
    from foundryflow.store.db import DatabaseNotConfiguredError

    try:
        app()
    except DatabaseNotConfiguredError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":  # `python -m foundryflow.cli`, as the Argo tests run it
    main()
