"""Simulator benchmark: recommendations for 50 models x 20 hardware configs, in well under a
second (issue 4), beside a baseline measured in the same run.

* **foundryflow**: :func:`foundryflow.sim.recommend` per model over the 20 seeded hardware
  configs — specs built once from catalog rows, their derived figures (weight bytes, KV
  bytes per token, activation peak) computed once per spec, the checks done once per
  model, then one prediction per TP degree.
* **baseline**: the same search written naively against the public API: for every
  candidate TP degree, build both specs from their catalog rows again (pydantic
  validation, derived figures recomputed) and call :func:`~foundryflow.sim.simulate` (which
  repeats the context and TP checks). Both must choose the same configuration for every
  pair; the run stops if they do not.

The models are the 7 seeded ones in bf16, fp8 and int4 (21) and 29 synthetic Llama-shaped
ones from 1B to 100B parameters; the workload is the seed's chatbot use case at
concurrency 32 with 50 RPS and the spike buffer. No database: the catalog rows are the
seed's, built as transient ORM rows. Timings are the best of ``--rounds`` runs.

Run: ``.venv/bin/python bench/bench_sim.py [--rounds 7]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from foundryflow.benchmark import seed
from foundryflow.sim.model import simulate, tp_degrees
from foundryflow.sim.recommend import recommend, replicas_for, shortfall
from foundryflow.sim.specs import HardwareSpec, ModelSpec, Workload
from foundryflow.store.catalog import HardwareConfig, Model, UseCase

VOCAB = 128_256
Choice = tuple[str, str, int | None, int | None]
"""(model, hardware, tp, replicas) of one recommendation; None when infeasible."""


def model_rows() -> list[tuple[Model, str]]:
    """50 (catalog row, dtype): the seed's models in three dtypes, then synthetic ones."""
    rows = [(Model(**row), dtype) for row in seed.MODELS for dtype in ("bf16", "fp8", "int4")]
    shapes = itertools.product((2048, 3072, 4096, 5120, 6144, 8192), (16, 24, 32, 48, 64))
    for hidden, layers in itertools.islice(shapes, 50 - len(rows)):
        params = 12 * layers * hidden * hidden + 2 * VOCAB * hidden  # Llama-shaped
        synthetic = Model(
            uri=f"synthetic/h{hidden}-l{layers}",
            family="synthetic",
            parameter_count=params,
            num_layers=layers,
            hidden_size=hidden,
            num_attention_heads=hidden // 128,
            num_kv_heads=8,
            max_context=131_072,
        )
        rows.append((synthetic, "bf16"))
    return rows


def chatbot() -> Workload:
    use_case = UseCase(**next(u for u in seed.USE_CASES if u["name"] == "chatbot"))
    return Workload.from_catalog(use_case, concurrency=32, target_rps=50, spike_buffer=True)


def foundryflow_path(
    models: list[tuple[Model, str]], hardware: list[HardwareConfig], workload: Workload
) -> list[Choice]:
    hardware_specs = [HardwareSpec.from_catalog(h) for h in hardware]
    choices: list[Choice] = []
    for row, dtype in models:
        spec = ModelSpec.from_catalog(row, dtype)
        for r in recommend(spec, hardware_specs, workload):
            choices.append((spec.name + ":" + dtype, r.hardware, r.tp, r.replicas))
    return choices


def baseline_path(
    models: list[tuple[Model, str]], hardware: list[HardwareConfig], workload: Workload
) -> list[Choice]:
    choices: list[Choice] = []
    for row, dtype in models:
        for hw_row in sorted(hardware, key=lambda h: h.name):
            best: tuple[int, int, int] | None = None
            for tp in tp_degrees(HardwareSpec.from_catalog(hw_row)):
                spec = ModelSpec.from_catalog(row, dtype)
                node = HardwareSpec.from_catalog(hw_row)
                if spec.tp_problem(tp) is not None:
                    continue
                prediction = simulate(spec, node, workload, tp)
                if shortfall(prediction, workload) is not None:
                    continue
                replicas = replicas_for(workload, prediction.e2e_ms)
                candidate = (tp * replicas, tp, replicas)
                best = candidate if best is None else min(best, candidate)
            tp_, replicas_ = (best[1], best[2]) if best else (None, None)
            choices.append((row.uri + ":" + dtype, hw_row.name, tp_, replicas_))
    return choices


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, float, Any]:
    """Best and median seconds of ``rounds`` calls, and the last result."""
    times = []
    result = None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    models = model_rows()
    hardware = [HardwareConfig(**row) for row in seed.HARDWARE]
    workload = chatbot()
    pairs = len(models) * len(hardware)
    evaluations = sum(len(tp_degrees(HardwareSpec.from_catalog(h))) for h in hardware) * len(models)

    fast_best, fast_median, fast = timed(
        lambda: foundryflow_path(models, hardware, workload), args.rounds
    )
    slow_best, slow_median, slow = timed(
        lambda: baseline_path(models, hardware, workload), args.rounds
    )
    if sorted(fast) != sorted(slow):
        raise SystemExit("the two paths chose different configurations")
    feasible = sum(1 for choice in fast if choice[2] is not None)

    print(
        f"recommend: {len(models)} models x {len(hardware)} hardware configs = {pairs:,} pairs, "
        f"{evaluations:,} TP degrees tried; chatbot 512/256 tokens, concurrency 32, "
        f"50 RPS + spike buffer; {feasible:,} pairs feasible"
    )
    print(
        f"  baseline (specs rebuilt + simulate() per TP)  best {slow_best * 1e3:8.1f} ms"
        f"   median {slow_median * 1e3:8.1f} ms   {slow_best * 1e6 / pairs:6.1f} µs/pair"
    )
    print(
        f"  foundryflow (recommend, specs built once)     best {fast_best * 1e3:8.1f} ms"
        f"   median {fast_median * 1e3:8.1f} ms   {fast_best * 1e6 / pairs:6.1f} µs/pair"
        f"   speed-up x{slow_best / fast_best:.1f}"
    )
    print(f"  budget 1,000 ms: {fast_best * 1e3:.1f} ms used ({fast_best * 100:.1f}%)")


if __name__ == "__main__":
    main()
