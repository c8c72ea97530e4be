"""``ops.maintain_partitions`` and ``ops.vacuum_analyze``: routine database upkeep."""

from __future__ import annotations

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.ops.maintenance import maintain_partitions, vacuum_analyze


class PartitionsParams(ActionParams):
    months_ahead: int = Field(default=3, ge=0, le=24)
    retention_months: int = Field(default=6, ge=1, le=120)


class PartitionsOutputs(ActionOutputs):
    created: list[str]
    dropped: list[str]
    existing: list[str]
    skipped: list[str]


class MaintainPartitions(Action[PartitionsParams, PartitionsOutputs]):
    meta = ActionMeta(
        name="ops.maintain_partitions",
        description="Create the monthly event_log partitions from this month to months_ahead "
        "ahead and drop those that ended more than retention_months ago.",
        idempotent=True,
    )
    Params = PartitionsParams
    Outputs = PartitionsOutputs

    def run(self, ctx: ActionContext, params: PartitionsParams) -> PartitionsOutputs:
        report = maintain_partitions(params.months_ahead, params.retention_months)
        ctx.log.info("partitions created %s, dropped %s", report.created, report.dropped)
        if report.skipped:
            ctx.log.warning("partitions left alone (not ours): %s", report.skipped)
        return PartitionsOutputs(
            created=report.created,
            dropped=report.dropped,
            existing=report.existing,
            skipped=report.skipped,
        )


class VacuumParams(ActionParams):
    tables: list[str] | None = Field(
        default=None,
        description="Tables to vacuum; empty or unset: the hot tables that exist.",
    )


class VacuumOutputs(ActionOutputs):
    seconds: dict[str, float]
    total_seconds: float


class VacuumAnalyze(Action[VacuumParams, VacuumOutputs]):
    meta = ActionMeta(
        name="ops.vacuum_analyze",
        description="VACUUM (ANALYZE) the hot tables (or the given ones, checked against the "
        "catalog) and record dead tuples before and after.",
        idempotent=True,
    )
    Params = VacuumParams
    Outputs = VacuumOutputs

    def run(self, ctx: ActionContext, params: VacuumParams) -> VacuumOutputs:
        seconds = vacuum_analyze(params.tables or None)
        ctx.log.info("vacuumed %d table(s)", len(seconds))
        return VacuumOutputs(seconds=seconds, total_seconds=sum(seconds.values()))
