"""``foundryflow pipeline``: pipeline deployments from the command line (seed 001's CLI),
and ``pipeline work``, the command every runner pod of a deployment runs.

The commands mirror the seed's (``deploy``, ``list-deployments``, ``get-deployment``,
``update-deployment``, ``delete-deployment``) plus ``rollback-deployment`` and
``deployment-history``. Parameters are given as ``--param name=value`` and parsed by the
pipeline's declared type (JSON for numbers, arrays, objects); errors a user can cause exit
2 and say what to change; nothing changes before every check passed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from foundryflow.console import console, err, usage_error

pipeline_app = typer.Typer(
    help="Pipeline deployments (seed 001): pools of pipeline runners on target nodes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

HEARTBEAT = Path("/tmp/foundryflow-heartbeat")
STATUS_STYLE = {
    "active": "green",
    "deploying": "cyan",
    "updating": "cyan",
    "failed": "bold red",
    "deleting": "magenta",
    "deleted": "dim",
}


def _actor() -> str:
    return os.environ.get("FOUNDRYFLOW_ACTOR") or os.environ.get("USER") or "cli"


def _pairs(text: str | None, what: str) -> dict[str, str]:
    """``a=1,b=2`` -> {"a": "1", "b": "2"}."""
    if not text:
        return {}
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise usage_error(f"{what} {item!r} is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


def _params(pipeline_name: str, given: list[str] | None) -> dict[str, Any]:
    """``--param name=value`` by the pipeline's parameter types."""
    from foundryflow.spec.loader import PipelineCatalog
    from foundryflow.spec.params import ParamsError, parse_text_value

    if not given:
        return {}
    try:
        pipeline = PipelineCatalog(require_actions=False).get(pipeline_name)
    except KeyError as exc:
        raise usage_error(str(exc.args[0])) from None
    params: dict[str, Any] = {}
    for item in given:
        name, sep, text = item.partition("=")
        if not sep:
            raise usage_error(f"--param {item!r} is not name=value")
        try:
            params[name] = parse_text_value(pipeline.parameter(name), text)
        except KeyError:
            known = ", ".join(p.name for p in pipeline.parameters) or "none"
            raise usage_error(
                f"pipeline {pipeline.name} has no parameter {name!r} ({known})"
            ) from None
        except ParamsError as exc:
            raise usage_error(str(exc)) from None
    return params


def _resources(requests: str | None, limits: str | None) -> dict[str, dict[str, str]]:
    resources = {"requests": _pairs(requests, "--requests"), "limits": _pairs(limits, "--limits")}
    return {key: value for key, value in resources.items() if value}


def _finish(change: Any) -> None:
    from foundryflow.pipeline_deployment import service

    with console.status(f"{change.action.value} of revision {change.revision}…"):
        outcome = service.carry_out(change)
    if not outcome.ok:
        err.print(f"[red]✗[/] {outcome.error}", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"[green]✓[/] {change.action.value}: deployment {outcome.deployment_id} revision "
        f"{outcome.revision}, {outcome.status.value}",
        highlight=False,
    )


def _begin(call: Any, *args: Any) -> Any:
    from pydantic import ValidationError

    from foundryflow.pipeline_deployment.service import DeploymentError
    from foundryflow.problems import describe

    try:
        return call(*args)
    except DeploymentError as exc:
        raise usage_error(str(exc)) from None
    except ValidationError as exc:
        raise usage_error(describe(exc, empty="request")) from None


def _parse_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise usage_error(f"{text!r} is not a deployment id (a UUID)") from None


@pipeline_app.command("deploy")
def deploy(
    name: Annotated[str, typer.Option("--name", help="The pipeline the runners run.")],
    deployment_name: Annotated[str, typer.Option(help="Deployment (and Helm release) name.")],
    cluster: Annotated[str, typer.Option(help="Cluster name or id.")],
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "foundryflow",
    selector: Annotated[
        str | None, typer.Option(help="Target nodes: label=value[,label=value].")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Pipeline parameter name=value.")
    ] = None,
    replicas: Annotated[int, typer.Option(help="Number of runners.")] = 1,
    requests: Annotated[str | None, typer.Option(help="cpu=100m,memory=128Mi")] = None,
    limits: Annotated[str | None, typer.Option(help="cpu=500m,memory=512Mi")] = None,
    interval: Annotated[int, typer.Option(help="Seconds between a runner's runs.")] = 60,
) -> None:
    """Deploy a pool of runners of a pipeline onto the nodes the selector picks."""
    from foundryflow.pipeline_deployment import service
    from foundryflow.pipeline_deployment.model import CreateRequest

    def build() -> service.Change:
        request = CreateRequest(
            pipeline_name=name,
            deployment_name=deployment_name,
            namespace=namespace,
            cluster=cluster,
            target_nodes=_pairs(selector, "--selector"),
            parameters=_params(name, param),
            replicas=replicas,
            resources=_resources(requests, limits),  # type: ignore[arg-type]
            interval_seconds=interval,
        )
        return service.begin_create(request, _actor())

    _finish(_begin(build))


@pipeline_app.command("list-deployments")
def list_deployments(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Deployments, newest first."""
    from foundryflow.pipeline_deployment import service
    from foundryflow.store.pipeline_deployment import DeploymentStatus

    try:
        wanted = DeploymentStatus(status) if status else None
    except ValueError:
        choices = ", ".join(s.value for s in DeploymentStatus)
        raise usage_error(f"--status {status!r} is not one of {choices}") from None
    found = service.list_deployments(
        namespace=namespace, status=wanted, pipeline=pipeline, page=page, per_page=per_page
    )
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table("id", "name", "pipeline", "namespace", "status", "replicas", "rev", "updated")
    for d in found["deployments"]:
        style = STATUS_STYLE.get(d["status"], "")
        table.add_row(
            d["deployment_id"],
            d["deployment_name"],
            d["pipeline_name"],
            d["namespace"],
            f"[{style}]{d['status']}[/]",
            str(d["replicas"]),
            str(d["revision"]),
            d["updated_at"][:19],
        )
    console.print(table)
    console.print(f"{found['total']} deployment(s); page {found['page']}", highlight=False)


@pipeline_app.command("get-deployment")
def get_deployment(
    deployment_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One deployment with its instances (desired, ready, updated) and phase."""
    from foundryflow.pipeline_deployment import service

    found = _begin(service.get, _parse_id(deployment_id))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    style = STATUS_STYLE.get(found["status"], "")
    instances = found["instances"]
    console.print(
        f"[bold]{found['deployment_name']}[/] ({found['pipeline_name']} "
        f"{found['pipeline_version']}) [{style}]{found['status']}[/] {found['phase'] or ''}\n"
        f"namespace {found['namespace']}  revision {found['revision']}  "
        f"instances {instances['ready']}/{instances['desired']} ready, "
        f"{instances['updated']} updated\n"
        f"target nodes {json.dumps(found['target_nodes'])}\n"
        f"parameters {json.dumps(found['parameters'])}\n"
        f"resources {json.dumps(found['resources'])}",
        highlight=False,
    )
    if found["error"]:
        err.print(f"[red]{found['error']}[/]", highlight=False)


@pipeline_app.command("update-deployment")
def update_deployment(
    deployment_id: Annotated[str, typer.Argument(metavar="ID")],
    param: Annotated[list[str] | None, typer.Option("--param", help="name=value")] = None,
    selector: Annotated[str | None, typer.Option(help="New target nodes.")] = None,
    replicas: Annotated[int | None, typer.Option(help="New number of runners.")] = None,
    requests: Annotated[str | None, typer.Option(help="cpu=100m,memory=128Mi")] = None,
    limits: Annotated[str | None, typer.Option(help="memory=1Gi")] = None,
    interval: Annotated[int | None, typer.Option(help="Seconds between runs.")] = None,
) -> None:
    """Change a deployment; only what is given changes (a rolling update)."""
    from foundryflow.pipeline_deployment import service
    from foundryflow.pipeline_deployment.model import UpdateRequest

    target = _parse_id(deployment_id)

    def build() -> service.Change:
        current = service.get(target)
        fields: dict[str, Any] = {
            "parameters": _params(current["pipeline_name"], param) or None,
            "target_nodes": _pairs(selector, "--selector") if selector is not None else None,
            "replicas": replicas,
            "resources": _resources(requests, limits) or None,
            "interval_seconds": interval,
        }
        request = UpdateRequest.model_validate({k: v for k, v in fields.items() if v is not None})
        return service.begin_update(target, request, _actor())

    _finish(_begin(build))


@pipeline_app.command("rollback-deployment")
def rollback_deployment(
    deployment_id: Annotated[str, typer.Argument(metavar="ID")],
    revision: Annotated[int, typer.Option(help="The revision to return to.", min=1)],
) -> None:
    """Return a deployment to an earlier revision (helm rollback on a real cluster)."""
    from foundryflow.pipeline_deployment import service

    _finish(_begin(service.begin_rollback, _parse_id(deployment_id), revision, _actor()))


@pipeline_app.command("delete-deployment")
def delete_deployment(deployment_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Uninstall the runners; the record and its history are purged 30 days later."""
    from foundryflow.pipeline_deployment import service

    _finish(_begin(service.begin_delete, _parse_id(deployment_id), _actor()))


@pipeline_app.command("deployment-history")
def deployment_history(
    deployment_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every revision: who, when, what changed, outcome."""
    from foundryflow.pipeline_deployment import service

    history = _begin(service.revisions, _parse_id(deployment_id))
    if as_json:
        typer.echo(json.dumps(history, indent=2))
        return
    table = Table("rev", "action", "actor", "at", "outcome", "changes")
    for r in history:
        changed = ", ".join(
            f"{k}: {json.dumps(v['from'])} -> {json.dumps(v['to'])}"
            for k, v in r["changes"].items()
        )
        if r["rolled_back_to"]:
            changed = f"to revision {r['rolled_back_to']}; {changed}"
        table.add_row(
            str(r["revision"]),
            r["action"],
            r["actor"],
            r["at"][:19],
            r["outcome"] + (f": {r['error']}" if r["error"] else ""),
            changed or "-",
        )
    console.print(table)


@pipeline_app.command("work")
def work(
    pipeline_name: Annotated[str, typer.Argument(metavar="PIPELINE")],
    params_file: Annotated[Path, typer.Option(help="Run parameters (JSON object).")],
    worker_id: Annotated[str, typer.Option(help="This runner's id (the pod name).")],
    interval: Annotated[float, typer.Option(help="Seconds between runs.")] = 60,
    max_runs: Annotated[int | None, typer.Option(help="Stop after this many runs.")] = None,
) -> None:
    """Run a pipeline again and again in this process: what each runner pod of a pipeline
    deployment does. SIGTERM finishes the current run, then exits 0."""
    from foundryflow.runtime.inline import work_loop
    from foundryflow.spec.loader import PipelineCatalog
    from foundryflow.spec.params import ParamsError, validate_run_params

    try:
        params = json.loads(params_file.read_text(encoding="utf-8"))
        pipeline = PipelineCatalog(require_actions=False).get(pipeline_name)
        validate_run_params(pipeline, params)
    except (OSError, json.JSONDecodeError) as exc:
        raise usage_error(f"cannot read {params_file}: {exc}") from None
    except KeyError as exc:
        raise usage_error(str(exc.args[0])) from None
    except ParamsError as exc:
        raise usage_error(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def report(result: Any) -> None:
        console.print(
            f"{worker_id}: execution {result.execution_id} {result.status.value}"
            + (f": {result.error}" if result.error else ""),
            highlight=False,
        )

    runs = work_loop(
        pipeline,
        params,
        worker_id=worker_id,
        interval=interval,
        max_runs=max_runs,
        stop=stop,
        on_result=report,
        heartbeat=HEARTBEAT,
    )
    console.print(f"{worker_id}: stopped after {runs} run(s)", highlight=False)
