"""What the three cluster-recommendation steps hand each other (seed 000, D3 hybrid).

``parallel_simulate`` turns one requested model into a :class:`SimulationResult`;
``aggregate_requirements`` keeps the clusters where every model has a feasible option
(:class:`CandidateCluster`); ``validate_cluster_fit`` places the models on each candidate's
free capacity (:func:`foundryflow.cluster.backends.free_capacity`). The models are strict
(unknown keys are errors): they arrive as JSON from the step before, or from whoever
triggered the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Self, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from foundryflow.registry.config_sources import split_model_id
from foundryflow.sim.specs import Workload
from foundryflow.store.catalog import HardwareConfig
from foundryflow.store.guardrail import Cluster, ClusterNode, HardwareMode

GUARDRAIL_INPUT_TOKENS = 512
"""Defaults of the catalog's ``guardrail`` use case (:mod:`foundryflow.benchmark.seed`): a
prompt or reply of 512 tokens classified with a short verdict, TTFT 150 ms, e2e 500 ms."""
GUARDRAIL_OUTPUT_TOKENS = 16
GUARDRAIL_TTFT_MS = 150.0
GUARDRAIL_E2E_MS = 500.0


T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def non_empty(items: Sequence[T], what: str) -> Sequence[T]:
    """Refuse an empty list with a message that says what is missing (pydantic's says "List
    should have at least 1 item", which does not tell a user which list or why)."""
    if not items:
        raise ValueError(f"{what} is empty: there is nothing to place")
    return items


# --------------------------------------------------------------------------- requests
class Targets(_Strict):
    """What one model's deployment must serve (seed step 7), per replica.

    Defaults are the catalog's ``guardrail`` use case at seed 002's one request at a time per
    pod. ``target_ttft`` and ``target_latency`` (milliseconds) are the seed's names for the
    two latency targets; null means no target. ``input_tokens`` left out is 512, or what the
    model's context leaves beside ``output_tokens`` (Prompt Guard reads 512 tokens in all).
    """

    concurrency: int = Field(default=1, ge=1, le=4096)
    input_tokens: int | None = Field(default=None, ge=1)
    output_tokens: int = Field(default=GUARDRAIL_OUTPUT_TOKENS, ge=1)
    target_ttft_ms: float | None = Field(
        default=GUARDRAIL_TTFT_MS,
        gt=0,
        validation_alias=AliasChoices("target_ttft_ms", "target_ttft"),
    )
    target_e2e_ms: float | None = Field(
        default=GUARDRAIL_E2E_MS,
        gt=0,
        validation_alias=AliasChoices("target_e2e_ms", "target_latency"),
    )
    target_rps: float | None = Field(default=None, gt=0)
    spike_buffer: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self.workload(self.input_tokens or 1)  # the simulator's own consistency rules
        return self

    def workload(self, input_tokens: int) -> Workload:
        return Workload(
            concurrency=self.concurrency,
            input_tokens=input_tokens,
            output_tokens=self.output_tokens,
            target_ttft_ms=self.target_ttft_ms,
            target_e2e_ms=self.target_e2e_ms,
            target_rps=self.target_rps,
            spike_buffer=self.spike_buffer,
        )

    def workload_for(self, max_context: int) -> Workload:
        """The workload with ``input_tokens`` defaulted for a model of ``max_context``."""
        default = max(1, min(GUARDRAIL_INPUT_TOKENS, max_context - self.output_tokens))
        return self.workload(self.input_tokens or default)


class ModelRef(_Strict):
    """A model to place (seed: ``{model_id, model_uri, deployment_config}``): the registry's
    id, its Hub uri, or both (then they must name the same model)."""

    model_id: int | None = Field(default=None, gt=0)
    model_uri: str | None = None
    deployment_config: Targets = Field(default_factory=Targets)

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.model_id is None and self.model_uri is None:
            raise ValueError("give model_id (the registry's id) or model_uri (org/name)")
        if self.model_uri is not None:
            split_model_id(self.model_uri)
        return self

    @property
    def label(self) -> str:
        return self.model_uri or f"model {self.model_id}"

    def matches(self, model_id: int, model_uri: str) -> bool:
        return (self.model_id in (None, model_id)) and (self.model_uri in (None, model_uri))


# --------------------------------------------------------------------------- simulation
class HardwareOption(_Strict):
    """The smallest configuration of one model on one hardware shape, or why there is none."""

    hardware: str
    device_type: str
    devices_per_node: int
    memory_gb_per_device: float
    """The device's memory (the catalog's figure)."""
    feasible: bool
    tp: int | None
    replicas: int | None
    devices: int | None
    """Devices the replicas use: tp x replicas."""
    nodes: int | None
    """Machines the replicas need, a replica never spanning two."""
    reserved_devices: int | None
    """Devices kept from other models: ``devices`` when shared, whole machines when dedicated."""
    memory_gb_used_per_device: float
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    reason: str | None

    @property
    def reserved_memory_gb(self) -> float:
        """The cost proxy: memory is the one figure comparable across vendors and shapes."""
        return (self.reserved_devices or 0) * self.memory_gb_per_device


class SimulationResult(_Strict):
    """One model's options over the hardware of all clusters, best first (feasible ones by
    reserved memory, then end-to-end latency)."""

    model_id: int
    model_uri: str
    dtype: str
    hardware_mode: HardwareMode
    workload: Workload
    options: list[HardwareOption]


# --------------------------------------------------------------------------- aggregation
class ModelChoice(_Strict):
    """A model on one cluster: ``chosen`` is its best feasible option on the cluster's
    hardware; ``fallbacks`` are the others there, tried in order when ``chosen`` is short."""

    model_id: int
    model_uri: str
    dtype: str
    workload: Workload
    chosen: HardwareOption
    fallbacks: list[HardwareOption]

    @property
    def options(self) -> list[HardwareOption]:
        return [self.chosen, *self.fallbacks]


class CandidateCluster(_Strict):
    cluster_id: uuid.UUID
    cluster_name: str
    models: list[ModelChoice]


class HardwareTotal(_Strict):
    """What the models whose preferred option is on this hardware need together."""

    devices: int
    reserved_devices: int
    nodes: int
    models: list[str]


class RejectedCluster(_Strict):
    cluster_id: uuid.UUID
    cluster_name: str
    reason: str


# --------------------------------------------------------------------------- clusters
def clusters_with_hardware(session: Session) -> dict[uuid.UUID, tuple[str, frozenset[str]]]:
    """Every cluster that has nodes: its name and the hardware names of its pools."""
    rows = session.execute(
        select(Cluster.id, Cluster.name, HardwareConfig.name)
        .join(ClusterNode, ClusterNode.cluster_id == Cluster.id)
        .join(HardwareConfig, HardwareConfig.id == ClusterNode.hardware_config_id)
        .order_by(Cluster.name)
    )
    found: dict[uuid.UUID, tuple[str, set[str]]] = {}
    for cluster_id, cluster_name, hardware in rows:
        found.setdefault(cluster_id, (cluster_name, set()))[1].add(hardware)
    return {key: (name, frozenset(names)) for key, (name, names) in found.items()}


def describe_counts(counts: Mapping[str, int], unit: str = "device") -> str:
    """``2 devices of l4-24gb-x1, 1 device of h100-sxm-80gb-x8`` (for messages)."""
    return ", ".join(
        f"{n} {unit}{'s' if n != 1 else ''} of {name}" for name, n in sorted(counts.items())
    )
