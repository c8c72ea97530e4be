"""``benchmark.summarize``: where the matrix of a model version stands after the workers."""

from __future__ import annotations

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.benchmark.queue import progress


class SummarizeParams(ActionParams):
    model_version_id: int


class SummarizeOutputs(ActionOutputs):
    counts: dict[str, int]
    total: int
    percent: float
    rate_per_minute: float


class Summarize(Action[SummarizeParams, SummarizeOutputs]):
    meta = ActionMeta(
        name="benchmark.summarize",
        description="Counts by status, percent done and recent rate of a model version's "
        "matrix; read-only.",
        idempotent=True,
    )
    Params = SummarizeParams
    Outputs = SummarizeOutputs

    def run(self, ctx: ActionContext, params: SummarizeParams) -> SummarizeOutputs:
        report = progress(params.model_version_id)
        counts = {
            "pending": report.pending,
            "running": report.running,
            "completed": report.completed,
            "failed": report.failed,
        }
        ctx.log.info("matrix of model version %d: %s", params.model_version_id, counts)
        return SummarizeOutputs(
            counts=counts,
            total=report.total,
            percent=round(report.percent, 2),
            rate_per_minute=round(report.rate_per_minute, 2),
        )
