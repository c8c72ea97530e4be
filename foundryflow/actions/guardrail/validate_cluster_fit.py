"""``guardrail.validate_cluster_fit``: can a candidate cluster hold all the models, now?

The last, sequential step of seed 000's D3 hybrid. Each candidate starts from its free
capacity (its node pools minus every recorded allocation, so what already runs there is
honoured); the models are then placed one at a time, largest first, and each placement is
taken off the capacity before the next model is checked. The cumulative usage of all
models is therefore what counts, not each model on an empty cluster.

Hardware modes:

- ``shared``: a model takes the devices it uses; models may share a machine. A replica's
  ``tp`` devices are counted within one node pool.
- ``dedicated``: a model takes whole machines, no other model on them. Allocations are
  recorded per pool, not per machine, so the whole free machines of a pool are its free
  devices divided by the devices per machine (allocations packed onto machines, as
  placements here are).

A model whose chosen option is short on a cluster falls back to its other options there
(another hardware of the same cluster) before the cluster is rejected. Valid clusters are
ranked by the memory of the devices they reserve (the cost proxy of ``parallel_simulate``),
then by the share of the cluster left free, then by name.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy.orm import Session

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._plan import (
    CandidateCluster,
    HardwareOption,
    HardwareTotal,
    ModelChoice,
    ModelRef,
    RejectedCluster,
    describe_counts,
    non_empty,
)
from foundryflow.actions.guardrail.deploy_models import DeploymentConfig
from foundryflow.cluster.backends import NodeCapacity, free_capacity
from foundryflow.cluster.base import ClusterError
from foundryflow.cluster.local import HARDWARE_LABEL, NODE_POOL_LABEL
from foundryflow.sim.constants import GPU_MEMORY_UTILIZATION
from foundryflow.store.guardrail import HardwareMode

CHART = "model-endpoint"
CHART_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""vLLM ``--dtype`` per registry dtype; quantised weights (fp8, int8, int4) keep ``auto``, so
vLLM reads the quantisation from the model's config."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class NodeShare(_Strict):
    """What a model takes from one node pool: a row of ``cluster_allocations`` to write."""

    node_id: uuid.UUID
    node_name: str
    replicas: int
    devices: int
    """Devices kept from other models (whole machines' worth when dedicated)."""
    machines: int | None
    """Whole machines taken (dedicated); None when shared."""
    memory_gb: float
    """Memory the model's replicas occupy on those devices."""


class Placement(_Strict):
    model_id: int
    model_uri: str
    hardware: str
    tp: int
    replicas: int
    devices: int
    reserved_devices: int
    reserved_memory_gb: float
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    fallback: bool
    """Placed on another option than its chosen one, which was short on this cluster."""
    allocations: list[NodeShare]


class ValidCluster(_Strict):
    cluster_id: uuid.UUID
    cluster_name: str
    rank: int
    reserved_devices: dict[str, int]
    reserved_memory_gb: float
    free_devices_after: dict[str, int]
    placements: list[Placement]


class PerModelConfig(_Strict):
    """A model on the best cluster: ``deployment_config`` is what ``deploy_models`` takes,
    ``chart_values`` the full ``charts/model-endpoint`` values it stands for."""

    model_id: int
    model_uri: str
    cluster_id: uuid.UUID
    cluster_name: str
    hardware_mode: HardwareMode
    hardware: str
    tp: int
    replicas: int
    devices: int
    reserved_devices: int
    allocations: list[NodeShare]
    deployment_config: DeploymentConfig
    chart: str
    chart_values: dict[str, Any]


class ValidateClusterFitParams(ActionParams):
    candidate_clusters: list[CandidateCluster]
    total_requirements: dict[str, HardwareTotal]
    models: list[ModelRef]
    hardware_mode: HardwareMode

    @field_validator("candidate_clusters")
    @classmethod
    def _candidates(cls, value: list[CandidateCluster]) -> list[CandidateCluster]:
        non_empty(value, "candidate_clusters")
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[ModelRef]) -> list[ModelRef]:
        non_empty(value, "models")
        return value


class ValidateClusterFitOutputs(ActionOutputs):
    valid_clusters: list[ValidCluster]
    rejected_clusters: list[RejectedCluster]
    per_model_configs: list[PerModelConfig]


@dataclass
class _Pool:
    capacity: NodeCapacity
    start: int
    """Free devices before this run (never below zero, even if rows overbook the pool)."""
    free: int
    taken_by: list[str] = field(default_factory=list)
    """Models of this run placed here, for the message when a later one is short."""


def _shares(option: HardwareOption, pools: list[_Pool], mode: HardwareMode) -> list[NodeShare]:
    """Where ``option``'s replicas go on ``pools`` (fullest pools first, to keep whole
    machines free), or [] when they do not all fit. Changes nothing."""
    assert option.tp is not None and option.replicas is not None
    tp, remaining = option.tp, option.replicas
    per_machine = option.devices_per_node // tp
    shares: list[NodeShare] = []
    for pool in sorted(pools, key=lambda p: (p.free, p.capacity.node_name)):
        if mode is HardwareMode.SHARED:
            replicas = min(remaining, pool.free // tp)
            machines, devices = None, replicas * tp
        else:
            whole = pool.free // pool.capacity.devices_per_node
            machines = min(whole, math.ceil(remaining / per_machine))
            replicas = min(remaining, machines * per_machine)
            devices = machines * pool.capacity.devices_per_node
        if replicas:
            memory = replicas * tp * option.memory_gb_used_per_device
            shares.append(
                NodeShare(
                    node_id=pool.capacity.node_id,
                    node_name=pool.capacity.node_name,
                    replicas=replicas,
                    devices=devices,
                    machines=machines,
                    memory_gb=round(memory, 3),
                )
            )
            remaining -= replicas
        if not remaining:
            return shares
    return []


def _shortfall(option: HardwareOption, pools: list[_Pool], mode: HardwareMode) -> str:
    """What ``option`` needs on this cluster and what is left, and who took the rest."""
    need = f"{option.hardware}: needs {option.replicas} replica(s) x tp {option.tp}"
    if mode is HardwareMode.DEDICATED:
        need += f" on {option.nodes} whole machine(s) of {option.devices_per_node} devices"
    if not pools:
        return f"{need}; the cluster has no such nodes any more"
    total = sum(p.capacity.devices_total for p in pools)
    start = sum(p.start for p in pools)
    free = sum(p.free for p in pools)
    left = f"{free} of {total} devices free"
    if mode is HardwareMode.DEDICATED:
        whole = sum(p.free // p.capacity.devices_per_node for p in pools)
        left += f" ({whole} whole machine(s))"
    taken = [name for p in pools for name in p.taken_by]
    used = [f"{total - start} in use before this run"]
    if taken:
        used.append(f"{start - free} taken by {', '.join(dict.fromkeys(taken))}")
    return f"{need}; {left}, {' and '.join(used)}"


@dataclass(frozen=True)
class _Fit:
    cluster: CandidateCluster
    placements: dict[int, Placement]
    reserved_memory_gb: float
    free_fraction: float
    reserved: dict[str, int]
    free_after: dict[str, int]


def fit(cluster: CandidateCluster, capacity: list[NodeCapacity], mode: HardwareMode) -> _Fit | str:
    """Place the models on ``capacity`` one at a time; the fit, or why the cluster is out."""
    pools = [_Pool(c, max(0, c.devices_free), max(0, c.devices_free)) for c in capacity]
    placements: dict[int, Placement] = {}
    largest_first = sorted(cluster.models, key=lambda m: -m.chosen.reserved_memory_gb)
    for choice in largest_first:
        placed = _place(choice, pools, mode)
        if isinstance(placed, str):
            return placed
        placements[choice.model_id] = placed
    reserved: dict[str, int] = defaultdict(int)
    for placement in placements.values():
        reserved[placement.hardware] += placement.reserved_devices
    free_after: dict[str, int] = defaultdict(int)
    for pool in pools:
        free_after[pool.capacity.hardware_name] += pool.free
    total = sum(c.devices_total for c in capacity)
    return _Fit(
        cluster=cluster,
        placements=placements,
        reserved_memory_gb=round(sum(p.reserved_memory_gb for p in placements.values()), 3),
        free_fraction=sum(free_after.values()) / total if total else 0.0,
        reserved=dict(sorted(reserved.items())),
        free_after=dict(sorted(free_after.items())),
    )


def _place(choice: ModelChoice, pools: list[_Pool], mode: HardwareMode) -> Placement | str:
    """The model on its first option that fits, taken off ``pools``; else why none does."""
    short: list[str] = []
    for option in choice.options:
        candidates = [p for p in pools if p.capacity.hardware_name == option.hardware]
        shares = _shares(option, candidates, mode)
        if not shares:
            short.append(_shortfall(option, candidates, mode))
            continue
        by_node = {p.capacity.node_id: p for p in candidates}
        for share in shares:
            by_node[share.node_id].free -= share.devices
            by_node[share.node_id].taken_by.append(choice.model_uri)
        assert option.tp is not None and option.replicas is not None
        reserved = sum(s.devices for s in shares)
        return Placement(
            model_id=choice.model_id,
            model_uri=choice.model_uri,
            hardware=option.hardware,
            tp=option.tp,
            replicas=option.replicas,
            devices=option.tp * option.replicas,
            reserved_devices=reserved,
            reserved_memory_gb=round(reserved * option.memory_gb_per_device, 3),
            ttft_ms=option.ttft_ms,
            tpot_ms=option.tpot_ms,
            e2e_ms=option.e2e_ms,
            fallback=option is not choice.chosen,
            allocations=shares,
        )
    return f"{choice.model_uri} does not fit: " + "; ".join(short)


def _capacity(session: Session, cluster_id: uuid.UUID) -> list[NodeCapacity] | str:
    """The cluster's pools now, or why it has none."""
    try:
        pools = free_capacity(cluster_id, session=session)
    except ClusterError:
        return "the cluster no longer exists"
    return pools or "the cluster has no nodes any more"


def chart_values(choice: ModelChoice, placement: Placement) -> dict[str, Any]:
    """The ``charts/model-endpoint`` values the placement implies (over the chart defaults).

    ``maxModelLen`` is the request length the memory was sized for (input + output tokens):
    a longer context would need KV cache the simulation did not count. The node selector
    keeps the pods on the hardware (and, when it is one, the node pool) they were placed on.
    """
    workload = choice.workload
    selector = {HARDWARE_LABEL: placement.hardware}
    if len(placement.allocations) == 1:
        selector[NODE_POOL_LABEL] = placement.allocations[0].node_name
    return {
        "replicaCount": placement.replicas,
        "model": {
            "name": choice.model_uri,
            "servedModelName": "",
            "tensorParallelSize": placement.tp,
            "maxModelLen": workload.input_tokens + workload.output_tokens,
            "dtype": CHART_DTYPES.get(choice.dtype, "auto"),
            "gpuMemoryUtilization": GPU_MEMORY_UTILIZATION,
        },
        "nodeSelector": selector,
    }


def deployment_config(choice: ModelChoice, placement: Placement) -> DeploymentConfig:
    """What ``deploy_models`` takes for the placement (seed: ``models_to_deploy``)."""
    shares = placement.allocations
    return DeploymentConfig(
        tp=placement.tp,
        replicas=placement.replicas,
        node_pool=shares[0].node_name if len(shares) == 1 else None,
        hardware=placement.hardware,
        max_model_len=choice.workload.input_tokens + choice.workload.output_tokens,
    )


def _match(cluster: CandidateCluster, models: list[ModelRef]) -> list[ModelChoice]:
    """The cluster's choice for each requested model, in the request's order."""
    ordered: list[ModelChoice] = []
    for ref in models:
        found = [m for m in cluster.models if ref.matches(m.model_id, m.model_uri)]
        if len(found) != 1:
            raise ValueError(
                f"candidate cluster {cluster.cluster_name} has {len(found)} entries for "
                f"{ref.label}: candidate_clusters and models are not of the same run"
            )
        ordered.append(found[0])
    if len(ordered) != len(cluster.models):
        raise ValueError(
            f"candidate cluster {cluster.cluster_name} places {len(cluster.models)} models, "
            f"{len(models)} were requested: candidate_clusters and models are not of the same run"
        )
    return ordered


class ValidateClusterFit(Action[ValidateClusterFitParams, ValidateClusterFitOutputs]):
    meta = ActionMeta(
        name="guardrail.validate_cluster_fit",
        description="Place the models one at a time on each candidate cluster's free "
        "capacity (dedicated: whole machines per model; shared: devices), ranking the "
        "clusters that hold them all; fails saying what was short where when none does.",
        idempotent=True,
    )
    Params = ValidateClusterFitParams
    Outputs = ValidateClusterFitOutputs

    def run(
        self, ctx: ActionContext, params: ValidateClusterFitParams
    ) -> ValidateClusterFitOutputs:
        mode = params.hardware_mode
        ordered = {c.cluster_id: _match(c, params.models) for c in params.candidate_clusters}
        with ctx.session_factory() as session:
            capacity = {c: _capacity(session, c) for c in ordered}
        fits: list[_Fit] = []
        rejected: list[RejectedCluster] = []
        for cluster in params.candidate_clusters:
            pools = capacity[cluster.cluster_id]
            outcome = pools if isinstance(pools, str) else fit(cluster, pools, mode)
            if isinstance(outcome, str):
                rejected.append(
                    RejectedCluster(
                        cluster_id=cluster.cluster_id,
                        cluster_name=cluster.cluster_name,
                        reason=outcome,
                    )
                )
            else:
                fits.append(outcome)
        if not fits:
            needs = {
                name: total.reserved_devices for name, total in params.total_requirements.items()
            }
            raise ValueError(
                f"no cluster can hold all {len(params.models)} model(s) in {mode.value} mode "
                f"(at their preferred options they need {describe_counts(needs)}):"
                + "".join(f"\n- {r.cluster_name}: {r.reason}" for r in rejected)
            )
        fits.sort(key=lambda f: (f.reserved_memory_gb, -f.free_fraction, f.cluster.cluster_name))
        valid = [
            ValidCluster(
                cluster_id=f.cluster.cluster_id,
                cluster_name=f.cluster.cluster_name,
                rank=rank,
                reserved_devices=f.reserved,
                reserved_memory_gb=f.reserved_memory_gb,
                free_devices_after=f.free_after,
                placements=[f.placements[m.model_id] for m in ordered[f.cluster.cluster_id]],
            )
            for rank, f in enumerate(fits, start=1)
        ]
        best = fits[0]
        configs = [
            PerModelConfig(
                model_id=choice.model_id,
                model_uri=choice.model_uri,
                cluster_id=best.cluster.cluster_id,
                cluster_name=best.cluster.cluster_name,
                hardware_mode=mode,
                hardware=placement.hardware,
                tp=placement.tp,
                replicas=placement.replicas,
                devices=placement.devices,
                reserved_devices=placement.reserved_devices,
                allocations=placement.allocations,
                deployment_config=deployment_config(choice, placement),
                chart=CHART,
                chart_values=chart_values(choice, placement),
            )
            for choice in ordered[best.cluster.cluster_id]
            for placement in [best.placements[choice.model_id]]
        ]
        ctx.log.info(
            "%s mode: %d cluster(s) fit (best %s), %d rejected",
            mode.value,
            len(valid),
            best.cluster.cluster_name,
            len(rejected),
        )
        return ValidateClusterFitOutputs(
            valid_clusters=valid, rejected_clusters=rejected, per_model_configs=configs
        )
