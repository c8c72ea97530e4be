"""``guardrail.aggregate_requirements``: which clusters could serve every model at all.

The middle of seed 000's D3 hybrid: the simulations ran per model, in parallel; here they
meet. A cluster is a candidate when every model has a feasible option on hardware the
cluster has; each model's best such option is its choice there, the others its fallbacks.
Free capacity and the hardware mode are the next step's (sequential) business: this one only
reads which hardware each cluster has, so it cannot reject a cluster for being busy.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import field_validator

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._plan import (
    CandidateCluster,
    HardwareTotal,
    ModelChoice,
    RejectedCluster,
    SimulationResult,
    clusters_with_hardware,
    non_empty,
)


class AggregateRequirementsParams(ActionParams):
    simulation_results: list[SimulationResult]

    @field_validator("simulation_results")
    @classmethod
    def _one_per_model(cls, results: list[SimulationResult]) -> list[SimulationResult]:
        non_empty(results, "simulation_results (one per model of the run)")
        seen: set[int] = set()
        for result in results:
            if result.model_id in seen:
                raise ValueError(f"{result.model_uri} is listed more than once")
            seen.add(result.model_id)
        return results


class AggregateRequirementsOutputs(ActionOutputs):
    candidate_clusters: list[CandidateCluster]
    total_requirements: dict[str, HardwareTotal]
    """By hardware: what the models whose preferred option (over all clusters) is there need."""
    excluded_clusters: list[RejectedCluster]


def totals(results: list[SimulationResult]) -> dict[str, HardwareTotal]:
    """Each model's preferred option (its first: the results are ordered) summed by hardware."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    models: dict[str, list[str]] = defaultdict(list)
    for result in results:
        best = result.options[0]
        figures = sums[best.hardware]
        for index, value in enumerate((best.devices, best.reserved_devices, best.nodes)):
            figures[index] += value or 0
        models[best.hardware].append(result.model_uri)
    return {
        name: HardwareTotal(devices=d, reserved_devices=r, nodes=n, models=models[name])
        for name, (d, r, n) in sorted(sums.items())
    }


def choose(result: SimulationResult, hardware: frozenset[str]) -> ModelChoice | None:
    """The model's feasible options on ``hardware``, best first; None when there is none."""
    usable = [o for o in result.options if o.feasible and o.hardware in hardware]
    if not usable:
        return None
    return ModelChoice(
        model_id=result.model_id,
        model_uri=result.model_uri,
        dtype=result.dtype,
        workload=result.workload,
        chosen=usable[0],
        fallbacks=usable[1:],
    )


class AggregateRequirements(Action[AggregateRequirementsParams, AggregateRequirementsOutputs]):
    meta = ActionMeta(
        name="guardrail.aggregate_requirements",
        description="Sum the models' requirements by hardware and keep the clusters whose "
        "hardware gives every model a feasible option (its choice there, with fallbacks).",
        idempotent=True,
    )
    Params = AggregateRequirementsParams
    Outputs = AggregateRequirementsOutputs

    def run(
        self, ctx: ActionContext, params: AggregateRequirementsParams
    ) -> AggregateRequirementsOutputs:
        results = params.simulation_results
        hopeless = [r for r in results if not any(o.feasible for o in r.options)]
        if hopeless:
            raise ValueError(
                "no hardware of any cluster meets the targets of "
                + "; ".join(
                    f"{r.model_uri}: " + " | ".join(f"{o.hardware}: {o.reason}" for o in r.options)
                    for r in hopeless
                )
            )
        with ctx.session_factory() as session:
            clusters = clusters_with_hardware(session)
        candidates: list[CandidateCluster] = []
        excluded: list[RejectedCluster] = []
        for cluster_id, (name, hardware) in clusters.items():
            choices = [(r, choose(r, hardware)) for r in results]
            missing = [
                f"{r.model_uri} meets its targets only on "
                + ", ".join(o.hardware for o in r.options if o.feasible)
                for r, choice in choices
                if choice is None
            ]
            if missing:
                reason = f"has {', '.join(sorted(hardware))}; " + "; ".join(missing)
                excluded.append(
                    RejectedCluster(cluster_id=cluster_id, cluster_name=name, reason=reason)
                )
            else:
                models = [choice for _, choice in choices if choice is not None]
                candidates.append(
                    CandidateCluster(cluster_id=cluster_id, cluster_name=name, models=models)
                )
        if not candidates:
            lines = "".join(f"\n- {c.cluster_name}: {c.reason}" for c in excluded)
            raise ValueError(
                "no cluster has hardware on which every model meets its targets"
                + (lines or ": no cluster has nodes")
            )
        ctx.log.info(
            "%d candidate cluster(s): %s; excluded: %s",
            len(candidates),
            ", ".join(c.cluster_name for c in candidates),
            ", ".join(c.cluster_name for c in excluded) or "none",
        )
        return AggregateRequirementsOutputs(
            candidate_clusters=candidates,
            total_requirements=totals(results),
            excluded_clusters=excluded,
        )
