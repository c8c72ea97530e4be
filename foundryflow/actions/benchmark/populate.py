"""``benchmark.populate_matrix``: write the matrix of one model version into PostgreSQL."""

from __future__ import annotations

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.benchmark.matrix import MatrixFilters, populate


class PopulateParams(ActionParams):
    model_version_id: int
    hardware: list[str] | None = None
    frameworks: list[str] | None = None
    workloads: list[str] | None = None
    batch_sizes: list[int] | None = None
    sequence_lengths: list[int] | None = None


class PopulateOutputs(ActionOutputs):
    inserted: int
    already_present: int
    skipped_not_fitting: int
    total_candidates: int


class PopulateMatrix(Action[PopulateParams, PopulateOutputs]):
    meta = ActionMeta(
        name="benchmark.populate_matrix",
        description="Cartesian product of hardware x framework x workload x batch x sequence "
        "length for a model version, minus what cannot fit; idempotent (COPY + ON CONFLICT).",
        idempotent=True,
    )
    Params = PopulateParams
    Outputs = PopulateOutputs

    def run(self, ctx: ActionContext, params: PopulateParams) -> PopulateOutputs:
        given = params.model_dump(exclude={"model_version_id"}, exclude_none=True)
        result = populate(params.model_version_id, MatrixFilters.model_validate(given))
        ctx.log.info("matrix populated: %s", result)
        return PopulateOutputs(
            inserted=result.inserted,
            already_present=result.already_present,
            skipped_not_fitting=result.skipped_not_fitting,
            total_candidates=result.total_candidates,
        )
