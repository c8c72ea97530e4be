"""``foundryflow simulate``: predict one model on one hardware option for one workload.

Registered by ``foundryflow.cli`` as ``app.command("simulate")(simulate_command)``. Names
are looked up in the catalog (:mod:`foundryflow.sim.catalog`: the database, or the seed
data when FOUNDRYFLOW_DATABASE_URL is unset). Errors a user can cause exit 2 with what to
change, as the ``matrix`` commands do.

The simulator is imported by the command, not here: every ``foundryflow`` invocation (each
Argo pod) builds the command tree, and the catalog's ORM imports take seconds.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from foundryflow.benchmark.cli import usage_error

if TYPE_CHECKING:
    from foundryflow.sim.model import Prediction

OPTION_OF_FIELD = {
    "concurrency": "--concurrency",
    "input_tokens": "--input-tokens",
    "output_tokens": "--output-tokens",
    "dtype": "--dtype",
}


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors in the command line's terms: ``--concurrency: Input should be …``."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        where = OPTION_OF_FIELD.get(field, field or "input")
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def _text(head: str, p: Prediction) -> str:
    verdict = "fits" if p.fits else "DOES NOT FIT"
    return "\n".join(
        [
            head,
            f"  workload    concurrency {p.concurrency}, "
            f"{p.input_tokens} input + {p.output_tokens} output tokens",
            f"  TTFT        {p.ttft_ms:,.1f} ms",
            f"  TPOT        {p.tpot_ms:,.2f} ms",
            f"  end-to-end  {p.e2e_ms:,.1f} ms",
            f"  tokens/s    {p.output_tokens_per_s:,.1f} output tokens/s for the replica "
            f"({p.requests_per_s:,.2f} requests/s)",
            f"  memory/GPU  {p.memory_gb:,.1f} GB of {p.memory_budget_gb:,.1f} GB usable: "
            f"{verdict} (weights {p.weights_gb:,.1f}, KV cache {p.kv_cache_gb:,.1f}, "
            f"activations {p.activations_gb:,.1f}, runtime {p.runtime_gb:,.1f})",
        ]
    )


def simulate_command(
    model: Annotated[
        str, typer.Option(help="Model URI or short name, e.g. Llama-3.1-8B-Instruct.")
    ],
    hardware: Annotated[str, typer.Option(help="Hardware config name, e.g. h100-sxm-80gb-x1.")],
    concurrency: Annotated[int, typer.Option(help="Requests one replica holds at once.")],
    input_tokens: Annotated[int, typer.Option(help="Prompt tokens per request.")],
    output_tokens: Annotated[int, typer.Option(help="Generated tokens per request.")],
    tp: Annotated[
        int | None,
        typer.Option(help="Tensor-parallel degree; default: the smallest that fits in memory."),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="Weight dtype (bf16, fp16, fp8, int8, int4, fp32); default: the "
            "dtype of the model's registered version."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Predict TTFT, TPOT, end-to-end latency, tokens/s and memory per GPU of one replica.

    Analytic model (foundryflow.sim): memory fit, compute-bound prefill, bandwidth-bound decode.
    """
    from foundryflow.sim.catalog import CatalogLookupError, load_catalog
    from foundryflow.sim.model import SimulationError, simulate
    from foundryflow.sim.recommend import smallest_fitting
    from foundryflow.sim.specs import Workload

    try:
        workload = Workload(
            concurrency=concurrency, input_tokens=input_tokens, output_tokens=output_tokens
        )
        catalog = load_catalog()
        hardware_spec = catalog.hardware_spec(hardware)
        model_spec = catalog.model_spec(model, dtype)
        if tp is None:
            prediction = smallest_fitting(model_spec, hardware_spec, workload)
        else:
            prediction = simulate(model_spec, hardware_spec, workload, tp)
    except ValidationError as exc:
        raise usage_error(_problems(exc)) from None
    except (CatalogLookupError, SimulationError) as exc:
        raise usage_error(str(exc)) from None
    if as_json:
        document: dict[str, Any] = {
            "model": model_spec.name,
            "dtype": model_spec.dtype,
            "hardware": hardware_spec.name,
            "catalog": catalog.source,
            **prediction.as_dict(),
        }
        typer.echo(json.dumps(document, allow_nan=False))
        return
    head = f"{model_spec.name} ({model_spec.dtype}) on {hardware_spec.name}, tp={prediction.tp}"
    if catalog.source == "seed":
        head += "  [seed catalog: FOUNDRYFLOW_DATABASE_URL not set]"
    typer.echo(_text(head, prediction))
