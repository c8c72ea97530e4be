"""Per hardware option, the smallest configuration that serves a workload within targets.

For each TP degree the node offers (:func:`~foundryflow.sim.model.tp_degrees`) one replica
is predicted; a degree is feasible when the model's heads split over it, the replica fits
in memory with ``concurrency`` requests at full length, and TTFT and end-to-end latency
meet their targets. Replicas then come from ``target_rps`` by seed 002's formula
(:mod:`foundryflow.sim.capacity`, one slot per concurrent request). The chosen degree uses
the fewest devices in total (``tp x replicas``), the smaller TP on a tie; every degree left
out as infeasible is listed with why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from foundryflow.sim.capacity import slots_for_rps
from foundryflow.sim.model import Prediction, check_context, predict, tp_degrees
from foundryflow.sim.specs import HardwareSpec, ModelSpec, Workload


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The smallest feasible configuration on one hardware option, or why there is none.

    ``prediction`` is the chosen replica's; when infeasible, that of the largest TP degree
    the model splits over (the closest to fitting).
    """

    hardware: str
    feasible: bool
    tp: int | None
    replicas: int | None
    gpus_total: int | None
    """Devices over all replicas (GPUs; sockets or HPUs on other device types)."""
    nodes: int | None
    """Nodes of this shape the replicas need."""
    prediction: Prediction
    reason: str | None
    """Why no degree is feasible; None when one is."""
    rejected: tuple[str, ...]
    """``tp=N: why`` for every degree found infeasible."""

    @property
    def fits(self) -> bool:
        return self.prediction.fits

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for step outputs (the guardrail workflow's recommended clusters)."""
        p = self.prediction
        return {
            "hardware": self.hardware,
            "feasible": self.feasible,
            "tp": self.tp,
            "replicas": self.replicas,
            "gpus_total": self.gpus_total,
            "nodes": self.nodes,
            "fits": self.fits,
            "ttft_ms": p.ttft_ms,
            "tpot_ms": p.tpot_ms,
            "e2e_ms": p.e2e_ms,
            "memory_gb_per_device": p.memory_gb,
            "reason": self.reason,
            "rejected": list(self.rejected),
        }


def shortfall(prediction: Prediction, workload: Workload) -> str | None:
    """What a replica misses (memory, TTFT, e2e), or None when it meets everything."""
    p = prediction
    problems = []
    if not p.fits:
        problems.append(
            f"needs {p.memory_gb:.1f} GB per device, {p.memory_budget_gb:.1f} GB usable "
            f"(weights {p.weights_gb:.1f}, KV cache {p.kv_cache_gb:.1f} for "
            f"{p.concurrency} x {p.input_tokens + p.output_tokens} tokens)"
        )
    if workload.target_ttft_ms is not None and p.ttft_ms > workload.target_ttft_ms:
        problems.append(f"TTFT {p.ttft_ms:.0f} ms > target {workload.target_ttft_ms:g} ms")
    if workload.target_e2e_ms is not None and p.e2e_ms > workload.target_e2e_ms:
        problems.append(f"e2e {p.e2e_ms:.0f} ms > target {workload.target_e2e_ms:g} ms")
    return "; ".join(problems) or None


def replicas_for(workload: Workload, e2e_ms: float) -> int:
    """Replicas of ``concurrency`` slots each that reach ``target_rps`` (1 without one)."""
    if workload.target_rps is None:
        return 1
    slots = slots_for_rps(workload.target_rps, e2e_ms, workload.spike_buffer)
    return math.ceil(slots / workload.concurrency)


def recommend_one(model: ModelSpec, hardware: HardwareSpec, workload: Workload) -> Recommendation:
    """The smallest feasible configuration of ``model`` on ``hardware`` (context checked by
    the caller: see :func:`recommend`)."""
    feasible: list[tuple[int, int, int, Prediction]] = []
    rejected: list[str] = []
    closest: Prediction | None = None
    for tp in tp_degrees(hardware):
        problem = model.tp_problem(tp)
        if problem is None:
            closest = predict(model, hardware, workload, tp)
            problem = shortfall(closest, workload)
            if problem is None:
                replicas = replicas_for(workload, closest.e2e_ms)
                feasible.append((tp * replicas, tp, replicas, closest))
                continue
        rejected.append(f"tp={tp}: {problem}")
    assert closest is not None, "tp=1 always splits"
    if not feasible:
        return Recommendation(
            hardware=hardware.name,
            feasible=False,
            tp=None,
            replicas=None,
            gpus_total=None,
            nodes=None,
            prediction=closest,
            reason="; ".join(rejected),
            rejected=tuple(rejected),
        )
    gpus, tp, replicas, prediction = min(feasible, key=lambda f: (f[0], f[1]))
    return Recommendation(
        hardware=hardware.name,
        feasible=True,
        tp=tp,
        replicas=replicas,
        gpus_total=gpus,
        nodes=math.ceil(gpus / hardware.device_count),
        prediction=prediction,
        reason=None,
        rejected=tuple(rejected),
    )


def recommend(
    model: ModelSpec, hardware_options: Iterable[HardwareSpec], workload: Workload
) -> list[Recommendation]:
    """Per hardware option the smallest feasible configuration; feasible options first, by
    devices used, then by end-to-end latency; infeasible ones after, by name.

    Raises SimulationError when the workload exceeds the model's context: no hardware helps.
    """
    check_context(model, workload)
    results = [recommend_one(model, hardware, workload) for hardware in hardware_options]

    def order(r: Recommendation) -> tuple[int, float, float, str]:
        if r.gpus_total is not None:  # feasible
            return (0, r.gpus_total, r.prediction.e2e_ms, r.hardware)
        return (1, 0, 0.0, r.hardware)

    return sorted(results, key=order)


def smallest_fitting(model: ModelSpec, hardware: HardwareSpec, workload: Workload) -> Prediction:
    """The replica at the smallest TP degree that fits in memory (no latency targets), or at
    the largest possible degree when none fits — what ``simulate`` shows without ``--tp``.

    Raises SimulationError as :func:`~foundryflow.sim.model.simulate` does.
    """
    check_context(model, workload)
    last: Prediction | None = None
    for tp in tp_degrees(hardware):
        if model.tp_problem(tp) is None:
            last = predict(model, hardware, workload, tp)
            if last.fits:
                return last
    assert last is not None, "tp=1 always splits"
    return last
