"""``foundryflow matrix``: populate the benchmark matrix, drain it, watch it, recover it.

The queue, matrix and runner modules are imported by the commands that use them, not here:
every ``foundryflow`` invocation (each Argo pod) builds this command tree.

The pipelines' actions (populate, drain, reset-stale) call the same functions; people run
these commands to try a matrix, add workers by hand, or look at one. Errors a
user can cause exit 2 with what to change; output is plain lines unless stdout is a
terminal, so pod logs stay readable.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from contextlib import nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress_bar import ProgressBar
from rich.table import Table

from foundryflow.console import console, usage_error

if TYPE_CHECKING:
    from foundryflow.benchmark.matrix import MatrixFilters
    from foundryflow.benchmark.worker import DrainSummary

matrix_app = typer.Typer(
    help=(
        "The benchmark matrix in PostgreSQL: populate a model version's configs, drain them "
        "with any number of workers, reset configs of dead workers, follow progress."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

OPTION_OF_FIELD = {
    "hardware": "--hardware",
    "frameworks": "--framework",
    "workloads": "--workload",
    "batch_sizes": "--batch-sizes",
    "sequence_lengths": "--sequence-lengths",
}
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> timedelta:
    """``7200``, ``7200s``, ``30m``, ``2h``, ``1d``, ``1h30m``."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return timedelta(seconds=float(value))
    if value and DURATION.sub("", value) == "":
        return timedelta(
            seconds=sum(float(n) * UNIT_SECONDS[u] for n, u in DURATION.findall(value))
        )
    raise usage_error(f"{option}: {text!r} is not a duration; use e.g. 2h, 30m, 7200s or 1h30m")


def parse_ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise usage_error(
            f"{option}: {text!r} is not a comma-separated list of integers (e.g. 1,8,32)"
        ) from None


def filters_from_options(**options: Any) -> MatrixFilters:
    from foundryflow.benchmark.matrix import MatrixFilters

    given = {field: value for field, value in options.items() if value is not None}
    try:
        return MatrixFilters(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0])
            where = OPTION_OF_FIELD.get(field, field)
            detail = error["msg"].removeprefix("Value error, ")
            if len(error["loc"]) > 1:
                detail = f"{error['input']!r}: {detail}"
            problems.append(f"{where}: {detail}")
        raise usage_error("; ".join(problems)) from None


@matrix_app.callback()
def require_database() -> None:
    """Every matrix command needs PostgreSQL; say so up front rather than mid-traceback."""
    from foundryflow.store.db import DatabaseNotConfiguredError, database_url

    try:
        database_url()
    except DatabaseNotConfiguredError as exc:
        raise usage_error(str(exc)) from None


@matrix_app.command("populate")
def populate_command(
    model_version: Annotated[int, typer.Option(help="Model version id to build the matrix for.")],
    hardware: Annotated[
        list[str] | None, typer.Option(help="Only this hardware config (repeat for more).")
    ] = None,
    framework: Annotated[
        list[str] | None, typer.Option(help="Only this framework, e.g. vllm (repeatable).")
    ] = None,
    workload: Annotated[
        list[str] | None, typer.Option(help="Only this use case, e.g. chatbot (repeatable).")
    ] = None,
    batch_sizes: Annotated[
        str | None, typer.Option(help="Comma-separated; default 1,8,32,64,128.")
    ] = None,
    sequence_lengths: Annotated[
        str | None, typer.Option(help="Comma-separated; default 512,1024,2048,4096,8192.")
    ] = None,
) -> None:
    """Insert the configs of a model version's matrix that are not there yet.

    The matrix is hardware x framework x workload x batch size x sequence length.

    Hardware the weights do not fit on is skipped; re-running inserts only what is missing.
    """
    filters = filters_from_options(
        hardware=hardware,
        frameworks=framework,
        workloads=workload,
        batch_sizes=parse_ints(batch_sizes, "--batch-sizes"),
        sequence_lengths=parse_ints(sequence_lengths, "--sequence-lengths"),
    )
    from foundryflow.benchmark.matrix import MatrixError, populate

    spinner = console.status("populating the matrix…") if console.is_terminal else nullcontext()
    try:
        with spinner:
            result = populate(model_version, filters)
    except MatrixError as exc:
        raise usage_error(str(exc)) from None
    line = (
        f"model version {model_version}: {result.inserted:,} inserted, "
        f"{result.already_present:,} already present, "
        f"{result.skipped_not_fitting:,} skipped (weights do not fit) "
        f"of {result.total_candidates:,} candidates in {result.seconds:.2f}s"
    )
    if result.inserted and result.seconds:
        line += f" ({result.inserted / result.seconds:,.0f} rows/s)"
    console.print(line, highlight=False)


def _summary_line(worker_id: str, summary: DrainSummary) -> str:
    line = (
        f"worker {worker_id}: claimed {summary.claimed:,}, completed {summary.completed:,}, "
        f"failed {summary.failed:,}"
    )
    if summary.fenced:
        line += f", fenced out {summary.fenced:,}"
    if summary.released:
        line += f", released {summary.released:,}"
    return line + f" in {summary.seconds:.1f}s"


@matrix_app.command("work")
def work_command(
    worker_id: Annotated[str, typer.Option(help="Unique name of this worker, e.g. the pod name.")],
    batch: Annotated[int, typer.Option(help="Configs claimed at a time.", min=1, max=10_000)] = 10,
    runner: Annotated[
        str, typer.Option(help="Runner name (entry point group foundryflow.runners).")
    ] = "simulate",
    model_version: Annotated[
        int | None, typer.Option(help="Only configs of this model version.")
    ] = None,
    runner_option: Annotated[
        list[str] | None, typer.Option(help="key=value passed to the runner (repeatable).")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(help="Runs of a config before it fails for good.", min=1)
    ] = 3,
) -> None:
    """Claim and run configs until none is pending (SIGTERM: finish the run, release the rest)."""
    from foundryflow.benchmark.runners import get_runner, parse_runner_options
    from foundryflow.benchmark.worker import drain, stop_on_signals

    try:
        bench_runner = get_runner(runner, **parse_runner_options(runner_option or []))
    except (LookupError, ValueError) as exc:
        raise usage_error(str(exc)) from None
    stop = threading.Event()
    status = console.status(f"worker {worker_id}: claiming…")
    last_line = time.monotonic()

    def report(summary: DrainSummary) -> None:
        nonlocal last_line
        if console.is_terminal:
            status.update(_summary_line(worker_id, summary))
        elif time.monotonic() - last_line >= 10:
            last_line = time.monotonic()
            console.print(_summary_line(worker_id, summary), highlight=False)

    with stop_on_signals(stop), status if console.is_terminal else nullcontext():
        summary = drain(
            worker_id,
            bench_runner,
            batch=batch,
            model_version_id=model_version,
            stop=stop,
            on_progress=report,
            max_attempts=max_attempts,
        )
    console.print(_summary_line(worker_id, summary), highlight=False)
    if not stop.is_set():
        console.print("nothing pending: done", highlight=False)


@matrix_app.command("reset-stale")
def reset_stale_command(
    older_than: Annotated[
        str, typer.Option(help="Heartbeat age that counts as dead, e.g. 2h, 30m, 7200s.")
    ] = "2h",
    max_attempts: Annotated[
        int, typer.Option(help="A config claimed this often fails for good instead.", min=1)
    ] = 3,
) -> None:
    """Return running configs whose worker stopped heartbeating to pending."""
    age = parse_duration(older_than, "--older-than")
    from foundryflow.benchmark.queue import reset_stale

    count = reset_stale(age, max_attempts)
    console.print(f"reset {count:,} stale config(s) (no heartbeat for {age})", highlight=False)


@matrix_app.command("progress")
def progress_command(
    model_version: Annotated[int, typer.Option(help="Model version id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    window: Annotated[str, typer.Option(help="Period the rate is measured over.")] = "10m",
) -> None:
    """Counts by status, percent done, rate and ETA of a model version's matrix."""
    span = parse_duration(window, "--window")
    if span <= timedelta(0):
        raise usage_error("--window must be longer than 0s")
    from foundryflow.benchmark.matrix import MatrixError
    from foundryflow.benchmark.queue import progress

    try:
        report = progress(model_version, span)
    except MatrixError as exc:
        raise usage_error(str(exc)) from None
    if as_json:
        print(json.dumps(dataclasses.asdict(report)))
        return
    if not console.is_terminal:
        for key, value in dataclasses.asdict(report).items():
            shown = round(value, 2) if isinstance(value, float) else value
            console.print(f"{key} {shown}", highlight=False)
        return
    eta = "-" if report.eta_seconds is None else str(timedelta(seconds=round(report.eta_seconds)))
    done = report.completed + report.failed
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=max(report.total, 1), completed=done, width=40),
        f"{report.percent:5.1f}%  {done:,}/{report.total:,}",
    )
    console.print(grid, highlight=False)
    console.print(
        f"[dim]pending[/] {report.pending:,}  [cyan]running[/] {report.running:,}  "
        f"[green]completed[/] {report.completed:,}  [red]failed[/] {report.failed:,}  ·  "
        f"{report.rate_per_minute:,.1f}/min over {report.window_minutes:g} min  ·  ETA {eta}",
        highlight=False,
    )
