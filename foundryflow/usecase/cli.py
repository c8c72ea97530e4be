"""``foundryflow usecase``: validate templates, deploy, follow and stop use cases.

``deploy`` records the deployment, then runs its pipeline headless through Airflow
(``dag.test``) with live progress, like ``foundryflow run``; ``render`` writes the same
pipeline as an Argo ``Workflow`` for ``argo submit``. Errors a user can cause exit 2 and
say what to change; nothing is written before the request has passed every check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

from foundryflow.console import console, err, usage_error

if TYPE_CHECKING:
    from foundryflow.store.usecase import UseCaseDeployment
    from foundryflow.usecase.builder import DeploymentRequest

usecase_app = typer.Typer(
    help="Use cases (seed 004): templates of models, vector databases and Helm charts, "
    "deployed as one pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

STATUS_STYLE = {
    "RUNNING": "green",
    "DEPLOYING": "cyan",
    "PENDING": "dim",
    "SKIPPED": "yellow",
    "FAILED": "bold red",
    "STOPPING": "magenta",
    "STOPPED": "magenta",
}


def _load_request(path: Path) -> DeploymentRequest:
    from foundryflow.problems import describe
    from foundryflow.usecase.builder import DeploymentRequest

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return DeploymentRequest.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise usage_error(f"cannot read request {path}: {exc}") from None
    except ValidationError as exc:
        raise usage_error(f"request {path}: {describe(exc, empty='request')}") from None


@usecase_app.command("validate")
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Template files (default: every one in usecases/).")
    ] = None,
) -> None:
    """Check templates: shape, chart references and values, references, cycles, catalog."""
    from foundryflow.spec.validate import SpecError
    from foundryflow.usecase.builder import build_pipeline
    from foundryflow.usecase.catalog import load_catalog
    from foundryflow.usecase.template import UseCaseTemplateError, load_template, template_files

    paths = files or template_files()
    problems: list[str] = []
    try:
        catalog = load_catalog()
    except UseCaseTemplateError as exc:
        raise usage_error(str(exc)) from None
    for path in paths:
        try:
            pipeline = build_pipeline(load_template(path), catalog)
        except UseCaseTemplateError as exc:
            problems += [f"{exc.source}: {problem}" for problem in exc.problems]
            continue
        except SpecError as exc:
            problems += [f"{path}: {problem}" for problem in exc.problems]
            continue
        steps = ", ".join(step.id for step in pipeline.steps)
        console.print(f"[green]✓[/] {path}: pipeline {pipeline.name} ({steps})", highlight=False)
    for problem in problems:
        err.print(f"[red]✗[/] {problem}", highlight=False)
    if problems:
        raise usage_error(f"{len(problems)} problem(s) in {len(paths)} template(s)")


def _template_and_pipeline(template_ref: str, request: DeploymentRequest) -> tuple[Any, Any]:
    from foundryflow.spec.validate import SpecError
    from foundryflow.usecase.builder import build_pipeline
    from foundryflow.usecase.catalog import load_catalog
    from foundryflow.usecase.template import UseCaseTemplateError, find_template

    try:
        template = find_template(template_ref)
        return template, build_pipeline(template, load_catalog(), request)
    except KeyError as exc:
        raise usage_error(str(exc.args[0])) from None
    except UseCaseTemplateError as exc:
        raise usage_error("\n  ".join([f"{exc.source}:", *exc.problems])) from None
    except SpecError as exc:
        raise usage_error(str(exc)) from None


@usecase_app.command("render")
def render(
    template_ref: Annotated[str, typer.Argument(metavar="TEMPLATE", help="Name or file.")],
    request_file: Annotated[Path, typer.Option("--request", help="Deployment request (YAML).")],
    out: Annotated[
        Path | None, typer.Option(help="Write the Workflow here (default: stdout).")
    ] = None,
) -> None:
    """Write the request's pipeline as an Argo Workflow: ``argo submit <file>``."""
    from foundryflow.compile.argo import build_workflow, dump_yaml

    request = _load_request(request_file)
    _, pipeline = _template_and_pipeline(template_ref, request)
    text = dump_yaml(build_workflow(pipeline, generate_name=f"{pipeline.name}-{request.name}"))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}: argo submit {out}", highlight=False)


@usecase_app.command("deploy")
def deploy(
    template_ref: Annotated[str, typer.Argument(metavar="TEMPLATE", help="Name or file.")],
    request_file: Annotated[Path, typer.Option("--request", help="Deployment request (YAML).")],
) -> None:
    """Record the deployment and run its pipeline here (headless Airflow), with progress."""
    from foundryflow.local_run import run_pipeline
    from foundryflow.usecase.catalog import load_catalog
    from foundryflow.usecase.service import DeploymentError, create_deployment

    request = _load_request(request_file)
    template, pipeline = _template_and_pipeline(template_ref, request)
    created: list[UUID] = []

    def record(params: dict[str, Any]) -> dict[str, Any]:
        try:
            deployment_id = create_deployment(template, load_catalog(), request)
        except DeploymentError as exc:
            raise usage_error(str(exc)) from None
        created.append(deployment_id)
        console.print(f"deployment {deployment_id} recorded; deploying…", highlight=False)
        return {**params, "deployment_id": str(deployment_id)}

    ok = run_pipeline(pipeline, {}, console, prepare=record)
    if created:
        _show(created[0])
    if not ok:
        raise typer.Exit(1)


def _parse_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise usage_error(f"{text!r} is not a deployment id (a UUID)") from None


def _show(deployment_id: UUID) -> None:
    from foundryflow.usecase.service import DeploymentError, load_deployment

    try:
        record = load_deployment(deployment_id)
    except DeploymentError as exc:
        raise usage_error(str(exc)) from None
    _print(record)


def _print(record: UseCaseDeployment) -> None:
    style = STATUS_STYLE.get(record.status.value, "")
    console.print(
        f"[bold]{record.name}[/] ({record.template} {record.template_version}) "
        f"[{style}]{record.status.value}[/]  namespace {record.namespace}  id {record.id}",
        highlight=False,
    )
    if record.execution_id:
        console.print(f"execution {record.execution_id}", highlight=False)
    table = Table("component", "type", "selected", "status", "release", "endpoint / error")
    for c in record.components:
        cstyle = STATUS_STYLE.get(c.status.value, "")
        table.add_row(
            c.name,
            c.type,
            c.selected or (c.chart or "-"),
            f"[{cstyle}]{c.status.value}[/]",
            c.release_name or "-",
            c.error or c.endpoint_url or "-",
        )
    console.print(table)
    if record.message:
        console.print(record.message, highlight=False)
    if record.error:
        err.print(f"[red]{record.error}[/]", highlight=False)


@usecase_app.command("status")
def status(
    deployment_id: Annotated[str, typer.Argument(metavar="ID", help="Deployment id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A deployment and its components, brought up to date with its run."""
    from foundryflow.usecase.service import DeploymentError, load_deployment

    try:
        record = load_deployment(_parse_id(deployment_id))
    except DeploymentError as exc:
        raise usage_error(str(exc)) from None
    if not as_json:
        _print(record)
        return
    typer.echo(
        json.dumps(
            {
                "id": str(record.id),
                "name": record.name,
                "template": record.template,
                "status": record.status.value,
                "namespace": record.namespace,
                "execution_id": str(record.execution_id) if record.execution_id else None,
                "error": record.error,
                "message": record.message,
                "components": [
                    {
                        "name": c.name,
                        "type": c.type,
                        "selected": c.selected,
                        "status": c.status.value,
                        "release_name": c.release_name,
                        "endpoint_url": c.endpoint_url,
                        "error": c.error,
                    }
                    for c in record.components
                ],
            },
            indent=2,
        )
    )


@usecase_app.command("stop")
def stop(
    deployment_id: Annotated[str, typer.Argument(metavar="ID", help="Deployment id.")],
) -> None:
    """Cancel the deployment's run (if going) and uninstall its releases, newest first."""
    from foundryflow.usecase.service import DeploymentError, stop_deployment

    try:
        report = stop_deployment(_parse_id(deployment_id))
    except DeploymentError as exc:
        raise usage_error(str(exc)) from None
    if report.cancelled_run:
        console.print("cancelled the running deployment (its rollback ran)")
    for release in report.uninstalled:
        console.print(f"uninstalled {release}", highlight=False)
    for problem in report.errors:
        err.print(f"[red]✗[/] {problem}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
    console.print(f"deployment {report.deployment_id} stopped", highlight=False)
