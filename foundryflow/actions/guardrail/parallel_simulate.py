"""``guardrail.parallel_simulate``: one model's serving options on every cluster hardware.

The pipeline fans this step out per model (``foreach: "{{ params.models }}"``), so the
simulations run side by side (Airflow mapped tasks, Argo ``withParam``) and the next step
reads ``steps.parallel_simulate.outputs.result`` as the list of every model's result.

The candidate hardware is that of the nodes of all clusters: a shape no cluster has cannot
be deployed to, and a cluster's free capacity is the fit step's business. Options are
ordered by the hardware they keep from other models in the chosen mode (reserved devices x
their memory, the one cost figure comparable across shapes), so a small guard model prefers
an L4 to an H100, and in dedicated mode a one-GPU machine to an eight-GPU one.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._plan import HardwareOption, ModelRef, SimulationResult
from foundryflow.sim.catalog import DEFAULT_DTYPE
from foundryflow.sim.model import SimulationError
from foundryflow.sim.recommend import Recommendation, recommend
from foundryflow.sim.specs import HardwareSpec, ModelSpec
from foundryflow.store.catalog import HardwareConfig, Model, ModelVersion
from foundryflow.store.guardrail import ClusterNode, HardwareMode

SERVING_VENDOR = "NVIDIA"
"""``charts/model-endpoint`` requests ``nvidia.com/gpu``: other devices cannot serve it."""


class ParallelSimulateParams(ActionParams):
    model: ModelRef
    hardware_mode: HardwareMode
    callback_topics: list[str] | None = None
    """Accepted for the seed's shape; events go to the run's topics (``ctx.publish``)."""


class ParallelSimulateOutputs(ActionOutputs):
    result: SimulationResult


def load_model(session: Session, ref: ModelRef) -> tuple[Model, str]:
    """The registry row ``ref`` names and the dtype of its latest version."""
    query = select(Model).where(
        Model.id == ref.model_id if ref.model_id is not None else Model.uri == ref.model_uri
    )
    model = session.scalars(query).one_or_none()
    if model is None:
        raise LookupError(
            f"{ref.label} is not in the model registry: onboard it first "
            "(pipeline guardrail-model-onboarding)"
        )
    if ref.model_uri is not None and model.uri != ref.model_uri:
        raise LookupError(f"model_id {ref.model_id} is {model.uri}, not {ref.model_uri}")
    dtype = session.scalar(
        select(ModelVersion.dtype)
        .where(ModelVersion.model_id == model.id)
        .order_by(ModelVersion.id.desc())
        .limit(1)
    )
    return model, dtype or DEFAULT_DTYPE


def hardware_of_clusters(session: Session) -> list[HardwareConfig]:
    """The hardware shapes of the nodes of all clusters, by name."""
    in_use = select(ClusterNode.hardware_config_id)
    return list(
        session.scalars(
            select(HardwareConfig)
            .where(HardwareConfig.id.in_(in_use))
            .order_by(HardwareConfig.name)
        )
    )


def to_option(rec: Recommendation, hardware: HardwareConfig, mode: HardwareMode) -> HardwareOption:
    """The recommendation as the steps exchange it; infeasible where the chart cannot serve."""
    p = rec.prediction
    reason = rec.reason
    if rec.feasible and (hardware.device_type != "gpu" or hardware.vendor != SERVING_VENDOR):
        reason = (
            f"charts/model-endpoint serves on {SERVING_VENDOR} GPUs (nvidia.com/gpu); "
            f"{hardware.name} is a {hardware.vendor} {hardware.device_type}"
        )
    feasible = reason is None
    reserved = None
    if feasible and rec.nodes is not None:
        reserved = (
            rec.gpus_total if mode is HardwareMode.SHARED else rec.nodes * hardware.device_count
        )
    return HardwareOption(
        hardware=hardware.name,
        device_type=hardware.device_type,
        devices_per_node=hardware.device_count,
        memory_gb_per_device=hardware.memory_gb_per_device,
        feasible=feasible,
        tp=rec.tp if feasible else None,
        replicas=rec.replicas if feasible else None,
        devices=rec.gpus_total if feasible else None,
        nodes=rec.nodes if feasible else None,
        reserved_devices=reserved,
        memory_gb_used_per_device=round(p.memory_gb, 3),
        ttft_ms=round(p.ttft_ms, 3),
        tpot_ms=round(p.tpot_ms, 3),
        e2e_ms=round(p.e2e_ms, 3),
        reason=reason,
    )


def preference(option: HardwareOption) -> tuple[bool, float, float, str]:
    """Feasible first, then the least reserved memory, the lowest latency, the name."""
    if not option.feasible:
        return (True, 0.0, 0.0, option.hardware)
    return (False, option.reserved_memory_gb, option.e2e_ms, option.hardware)


class ParallelSimulate(Action[ParallelSimulateParams, ParallelSimulateOutputs]):
    meta = ActionMeta(
        name="guardrail.parallel_simulate",
        description="Simulate one model (a fan-out item) on the hardware of every cluster: "
        "per hardware the smallest TP x replicas that meets the targets, or why none does.",
        idempotent=True,
    )
    Params = ParallelSimulateParams
    Outputs = ParallelSimulateOutputs

    def run(self, ctx: ActionContext, params: ParallelSimulateParams) -> ParallelSimulateOutputs:
        with ctx.session_factory() as session:
            model, dtype = load_model(session, params.model)
            spec = ModelSpec.from_catalog(model, dtype)
            rows = hardware_of_clusters(session)
            hardware = [(row, HardwareSpec.from_catalog(row)) for row in rows]
        if not hardware:
            raise LookupError("no cluster has nodes: register a cluster and its node pools first")
        workload = params.model.deployment_config.workload_for(spec.max_context)
        try:
            recommendations = recommend(spec, [h for _, h in hardware], workload)
        except SimulationError as exc:
            raise ValueError(f"{spec.name}: {exc}") from None
        by_name = {row.name: row for row, _ in hardware}
        options = sorted(
            (to_option(r, by_name[r.hardware], params.hardware_mode) for r in recommendations),
            key=preference,
        )
        feasible = [o.hardware for o in options if o.feasible]
        ctx.log.info("%s (%s): feasible on %s", spec.name, dtype, ", ".join(feasible) or "nothing")
        ctx.publish("model_simulated", {"model_uri": spec.name, "feasible_on": feasible})
        return ParallelSimulateOutputs(
            result=SimulationResult(
                model_id=model.id,
                model_uri=model.uri,
                dtype=dtype,
                hardware_mode=params.hardware_mode,
                workload=workload,
                options=options,
            )
        )
