"""Spine benchmarks: template rendering and the per-step cost of the shared runtime.

Each figure is printed beside a baseline measured in the same run, on the same machine:

* rendering a step's params with compiled templates cached (what ``render`` does) vs
  parsing and compiling them on every call (what it did before the cache);
* ``run_step`` (render + validate + three short transactions + Redis events) vs calling
  the same action directly, which is the floor any runtime must pay.

Uses FOUNDRYFLOW_DATABASE_URL / FOUNDRYFLOW_REDIS_URL when set, else the embedded
throwaway services; needs the test actions package (installed by ``./dev test``).

Run: ``.venv/bin/python bench/bench_spine.py [--steps 300] [--renders 20000]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from foundryflow.actions import registry
from foundryflow.config import get_settings
from foundryflow.embedded import platform_services
from foundryflow.runtime import run_step, start_execution
from foundryflow.spec.loader import parse_pipeline
from foundryflow.spec.templating import ENV, compile_template, render
from foundryflow.store import migrate

PARAMS = {
    "models": "{{ params.models }}",
    "count": "{{ params.models | length }}",
    "label": "deploy {{ params.name }} to {{ params.cluster }} ({{ params.models | length }})",
    "previous": "{{ steps.a.outputs.total | default(0) }}",
}
CONTEXT: dict[str, Any] = {
    "params": {"models": [{"id": i} for i in range(5)], "name": "guard", "cluster": "h100-a"},
    "steps": {"a": {"outputs": {"total": 3}}},
    "execution": {},
}


def uncached_render(value: Any) -> Any:
    """The baseline: parse + compile each template every time."""
    if isinstance(value, dict):
        return {k: uncached_render(v) for k, v in value.items()}
    source = value
    match = source.strip()
    if match.startswith("{{") and match.endswith("}}") and match.count("{{") == 1:
        return ENV.compile_expression(match[2:-2], undefined_to_none=False)(**CONTEXT)
    return ENV.from_string(source).render(**CONTEXT)


def timed(fn: Callable[[], Any], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return time.perf_counter() - start


def bench_templates(renders: int) -> None:
    compile_template.cache_clear()
    assert render(PARAMS, CONTEXT) == uncached_render(PARAMS)
    baseline = timed(lambda: uncached_render(PARAMS), renders)
    cached = timed(lambda: render(PARAMS, CONTEXT), renders)
    print(f"templates: {renders} renders of a 4-template params dict")
    print(f"  baseline (compile every call) {baseline * 1e6 / renders:8.1f} µs/render")
    print(
        f"  foundryflow (compiled cache)  {cached * 1e6 / renders:8.1f} µs/render"
        f"   speed-up x{baseline / cached:.1f}"
    )


def bench_steps(steps: int) -> None:
    migrate.upgrade()
    spec = {
        "name": f"bench-{uuid.uuid4().hex[:6]}",
        "parameters": [{"name": "n", "type": "integer", "default": 1}],
        "steps": [
            {
                "id": f"s{i}",
                "action": "test.add",
                "params": {"a": "{{ params.n }}", "b": i},
                **({"depends_on": [f"s{i - 1}"]} if i else {}),
            }
            for i in range(steps)
        ],
    }
    pipeline = parse_pipeline(spec, "bench")
    action_cls = registry.get("test.add")
    direct: list[float] = []
    for i in range(steps):
        start = time.perf_counter()
        action_cls().run(None, action_cls.Params.model_validate({"a": 1, "b": i}))  # type: ignore[arg-type]
        direct.append(time.perf_counter() - start)
    execution = start_execution(pipeline, {}, engine="local", engine_run_id=uuid.uuid4().hex)
    through_runtime: list[float] = []
    for i in range(steps):
        start = time.perf_counter()
        outcome = run_step(execution, f"s{i}")
        through_runtime.append(time.perf_counter() - start)
        assert outcome.status == "COMPLETED"
    print(f"steps: {steps} sequential steps of test.add")
    print(f"  baseline (action.run direct)  median {statistics.median(direct) * 1e3:8.3f} ms/step")
    print(
        f"  run_step (state + events)     median "
        f"{statistics.median(through_runtime) * 1e3:8.3f} ms/step"
        f"   p95 {statistics.quantiles(through_runtime, n=20)[-1] * 1e3:.3f} ms"
        f"   ≈ {1 / statistics.median(through_runtime):.0f} steps/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--renders", type=int, default=20000)
    args = parser.parse_args()
    bench_templates(args.renders)
    with platform_services(get_settings()) as services:
        os.environ["FOUNDRYFLOW_DATABASE_URL"] = services.database_url
        os.environ["FOUNDRYFLOW_REDIS_URL"] = services.redis_url
        get_settings.cache_clear()
        bench_steps(args.steps)


if __name__ == "__main__":
    main()
