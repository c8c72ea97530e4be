"""Seed 002's capacity planning formula: how many serving slots a target RPS needs.

The seed (Guardrails platform operations, "Capacity Planning Formula")::

    RPS = (1000 ms / avg_end_to_end_latency_ms) x model_pods

with its worked example at 70 ms: 14 RPS → 1 pod, 50 → 4, 100 → 7, 1000 → 70; and the
traffic spike buffer: "to handle 50 RPS steady-state but ... 100 RPS spikes, provision for
100 RPS (7 pods per model)" — the buffer doubles the RPS provisioned for, which is what the
example computes (7 pods, not 2 x 4 = 8).

The seed's pods serve one request at a time (guardrail classifiers). An LLM replica holding
``concurrency`` requests at once is ``concurrency`` such slots: the formula per slot, so a
replica's capacity is ``concurrency x 1000 / e2e_ms`` (Little's law) and the seed's numbers
are the ``concurrency = 1`` case.
"""

from __future__ import annotations

import math

SPIKE_FACTOR = 2
"""Seed 002: "For 2x traffic spikes"."""


def capacity_rps(latency_ms: float, slots: int = 1) -> float:
    """Requests per second ``slots`` serving slots sustain at ``latency_ms`` each."""
    if latency_ms <= 0:
        raise ValueError(f"latency_ms must be positive, got {latency_ms}")
    return 1000 / latency_ms * slots


def slots_for_rps(target_rps: float, latency_ms: float, spike_buffer: bool = False) -> int:
    """The seed's ``model_pods`` for ``target_rps``: the fewest slots whose capacity reaches it
    (at least one), provisioning for ``SPIKE_FACTOR`` x the RPS with ``spike_buffer``."""
    if target_rps <= 0:
        raise ValueError(f"target_rps must be positive, got {target_rps}")
    if latency_ms <= 0:
        raise ValueError(f"latency_ms must be positive, got {latency_ms}")
    rps = target_rps * (SPIKE_FACTOR if spike_buffer else 1)
    # rps x latency / 1000, not rps / capacity_rps(): 100 / (1000 / 70) is 7.000000000000001
    # in floating point and would round up to 8; rounding to 9 places drops such noise
    return max(1, math.ceil(round(rps * latency_ms / 1000, 9)))
