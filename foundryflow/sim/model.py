"""The analytic model of serving one replica: memory per device, prefill, decode, TP.

One replica runs the model tensor-parallel over ``tp`` devices of a node and holds
``concurrency`` requests of ``input_tokens`` + ``output_tokens`` at once (continuous
batching, closed loop: each finished request is replaced at once).

Memory per device (must fit ``memory x GPU_MEMORY_UTILIZATION``)::

    weights / tp + activation peak + runtime reserve (+ TP buffers)
      + concurrency x (input + output) x KV bytes per token per device

Prefill of one prompt, a roofline — compute bound unless the prompt is tiny::

    max((2 x params x I + 2 x layers x hidden x I²) / tp / (peak x MFU),
        weights / tp / (bandwidth x efficiency)) + TP communication

(the second term of the FLOPs is causal attention, which matters beyond a few thousand
tokens). A decode step of the whole batch, bandwidth bound: every step streams the weights
once (shared by the batch: that is what batching amortises) and each sequence's KV cache,
at its mean length ``I + O/2``; compute bound only at large batches::

    max((weights / tp + C x (I + O/2) x KV per token per device) / (bandwidth x efficiency),
        C x (2 x params + 4 x layers x hidden x (I + O/2)) / tp / (peak x MFU)) + TP comm

TP communication: 2 all-reduces per layer per forward pass, each a ring all-reduce of
``tokens x hidden`` activations (``2 (tp - 1) / tp`` of it crosses each device's link, one
direction at half the vendor's bidirectional figure) plus a fixed latency.

Per request, in steady state, with a scheduler that runs waiting prefills first (vLLM's
default) and arrivals spread over time (closed loop): TTFT = its prefill, plus half a
decode step of the batch in flight when it arrives (if any); TPOT = one decode step plus
the prefills of the other ``C - 1`` requests, which each arrive once per request lifetime
and stall the batch's decode for a prefill (spread over ``O`` tokens); e2e = TTFT +
(O - 1) x TPOT. Throughput follows from Little's law: C requests every e2e. Bursts (many
prompts at once) queue prefills behind each other, which this does not model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from foundryflow.sim.constants import (
    ALLREDUCE_LATENCY_S,
    ALLREDUCES_PER_LAYER,
    BANDWIDTH_EFFICIENCY,
    COMPUTE_EFFICIENCY,
    GB,
    GPU_MEMORY_UTILIZATION,
    RUNTIME_RESERVE_GB,
    TP_RESERVE_GB,
)
from foundryflow.sim.specs import HardwareSpec, ModelSpec, Workload


class SimulationError(ValueError):
    """A question the model cannot answer as asked (context too long, impossible TP)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One replica of ``tp`` devices serving a workload. Memory figures are GB per device."""

    tp: int
    concurrency: int
    input_tokens: int
    output_tokens: int
    weights_gb: float
    kv_cache_gb: float
    activations_gb: float
    runtime_gb: float
    memory_gb: float
    """Everything above, per device."""
    memory_budget_gb: float
    """What the engine may use per device (``GPU_MEMORY_UTILIZATION`` of it)."""
    fits: bool
    prefill_ms: float
    decode_step_ms: float
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    output_tokens_per_s: float
    requests_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tp_degrees(hardware: HardwareSpec) -> list[int]:
    """TP degrees a node offers: powers of two that divide its device count."""
    degrees = []
    tp = 1
    while tp <= hardware.device_count:
        if hardware.device_count % tp == 0:
            degrees.append(tp)
        tp *= 2
    return degrees


def check_context(model: ModelSpec, workload: Workload) -> None:
    tokens = workload.input_tokens + workload.output_tokens
    if tokens > model.max_context:
        raise SimulationError(
            f"{workload.input_tokens} input + {workload.output_tokens} output tokens exceed "
            f"{model.name}'s context of {model.max_context} tokens"
        )


def check_tp(model: ModelSpec, hardware: HardwareSpec, tp: int) -> None:
    offered = tp_degrees(hardware)
    problem = model.tp_problem(tp) if tp in offered else f"not offered by {hardware.name}"
    if problem:
        possible = [d for d in offered if model.tp_problem(d) is None]
        raise SimulationError(
            f"tp={tp} is not possible for {model.name} on {hardware.name}: {problem}; "
            f"possible: {', '.join(map(str, possible))}"
        )


def simulate(
    model: ModelSpec, hardware: HardwareSpec, workload: Workload, tp: int = 1
) -> Prediction:
    """Predict one replica of ``model`` on ``tp`` devices of ``hardware`` under ``workload``.

    Raises SimulationError when the request is too long for the model's context or ``tp``
    is not a degree the node and the model's heads allow. A configuration that does not fit
    in memory is a prediction (``fits`` False), not an error.
    """
    check_context(model, workload)
    check_tp(model, hardware, tp)
    return predict(model, hardware, workload, tp)


def _allreduce_s(model: ModelSpec, hardware: HardwareSpec, tp: int, tokens: float) -> float:
    """All-reduces of one forward pass over ``tokens`` tokens, in seconds."""
    if tp == 1:
        return 0.0
    message = tokens * model.hidden_size * model.activation_bytes
    one_direction = hardware.interconnect_bandwidth_gbps * GB / 2
    each = ALLREDUCE_LATENCY_S + 2 * (tp - 1) / tp * message / one_direction
    return ALLREDUCES_PER_LAYER * model.num_layers * each


def predict(model: ModelSpec, hardware: HardwareSpec, workload: Workload, tp: int) -> Prediction:
    """:func:`simulate` without its checks, for callers that made them once (recommend)."""
    c, i, o = workload.concurrency, workload.input_tokens, workload.output_tokens
    params, layers, hidden = model.parameter_count, model.num_layers, model.hidden_size

    weights = model.weight_bytes / tp
    kv_per_token = model.kv_bytes_per_token_per_device(tp)
    kv = c * (i + o) * kv_per_token
    runtime = (RUNTIME_RESERVE_GB + (TP_RESERVE_GB if tp > 1 else 0.0)) * GB
    memory = weights + kv + model.activation_peak_bytes + runtime
    budget = hardware.memory_gb_per_device * GB * GPU_MEMORY_UTILIZATION

    flops = hardware.peak_tflops(model.dtype) * 1e12 * COMPUTE_EFFICIENCY
    bandwidth = hardware.memory_bandwidth_gbps * GB * BANDWIDTH_EFFICIENCY

    prefill_flops = 2 * params * i + 2 * layers * hidden * i * i
    prefill = max(prefill_flops / tp / flops, weights / bandwidth)
    prefill += _allreduce_s(model, hardware, tp, i)

    context = i + o / 2
    step_bytes = weights + c * context * kv_per_token
    step_flops = c * (2 * params + 4 * layers * hidden * context) / tp
    step = max(step_bytes / bandwidth, step_flops / flops) + _allreduce_s(model, hardware, tp, c)

    ttft = prefill + (step / 2 if c > 1 else 0.0)
    tpot = step + (c - 1) * prefill / o
    e2e = ttft + (o - 1) * tpot
    return Prediction(
        tp=tp,
        concurrency=c,
        input_tokens=i,
        output_tokens=o,
        weights_gb=weights / GB,
        kv_cache_gb=kv / GB,
        activations_gb=model.activation_peak_bytes / GB,
        runtime_gb=runtime / GB,
        memory_gb=memory / GB,
        memory_budget_gb=budget / GB,
        fits=memory <= budget,
        prefill_ms=prefill * 1e3,
        decode_step_ms=step * 1e3,
        ttft_ms=ttft * 1e3,
        tpot_ms=tpot * 1e3,
        e2e_ms=e2e * 1e3,
        output_tokens_per_s=c * o / e2e,
        requests_per_s=c / e2e,
    )
