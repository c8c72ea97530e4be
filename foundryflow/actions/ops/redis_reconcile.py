"""``ops.redis_reconcile``: rebuild every active guardrail config from PostgreSQL, report the
drift of Redis and repair it (seed 002; pipeline ``ops-redis-reconcile``, every 5 minutes).

The work is :func:`foundryflow.ops.redis_reconcile.reconcile` on ``FOUNDRYFLOW_REDIS_URL``
under the guardrail store's default prefix; it records the run in ``ops_runs``. Idempotent:
a second run finds everything in sync and writes nothing. The step fails when a config could
not be built or written (the others are still reconciled and the figures recorded).
"""

from __future__ import annotations

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.ops.redis_reconcile import reconcile
from foundryflow.store.redis_client import RedisNotConfiguredError, get_redis


class RedisReconcileParams(ActionParams):
    repair: bool = Field(default=True, description="Rewrite missing and drifted configs.")
    prune: bool = Field(
        default=False, description="Delete configs of profiles without any deployment."
    )


class RedisReconcileOutputs(ActionOutputs):
    configs: int = Field(ge=0, description="Active configs checked.")
    missing: int = Field(ge=0)
    drifted: int = Field(ge=0, description="Other content or unreadable.")
    unreadable: int = Field(ge=0)
    orphaned: int = Field(ge=0)
    repaired: int = Field(ge=0)
    pruned: int = Field(ge=0)
    inactive: int = Field(ge=0)
    failed: int = Field(ge=0)
    write_latency_mean_seconds: float | None
    write_latency_max_seconds: float | None
    read_latency_mean_seconds: float | None
    read_latency_max_seconds: float | None


class RedisReconcileError(RuntimeError):
    """Some configs could not be built or written; the others were reconciled."""


class RedisReconcile(Action[RedisReconcileParams, RedisReconcileOutputs]):
    meta = ActionMeta(
        name="ops.redis_reconcile",
        description="Rebuild every active guardrail config from PostgreSQL, report missing, "
        "drifted and orphaned configs in Redis and rewrite the missing and drifted ones.",
        idempotent=True,
    )
    Params = RedisReconcileParams
    Outputs = RedisReconcileOutputs

    def run(self, ctx: ActionContext, params: RedisReconcileParams) -> RedisReconcileOutputs:
        try:
            client = get_redis()
        except RedisNotConfiguredError as exc:
            raise RuntimeError(f"{exc}: guardrail configs live in Redis") from None
        report = reconcile(
            client,
            repair=params.repair,
            prune=params.prune,
            sessions=ctx.session_factory,
            logger=ctx.log,
        )
        if report.errors:
            raise RedisReconcileError(
                f"{report.failed} of {report.configs} configs not reconciled: "
                + "; ".join(report.errors)
            )
        return RedisReconcileOutputs.model_validate(report.details())
