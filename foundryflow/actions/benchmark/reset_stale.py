"""``benchmark.reset_stale``: the spot handler; configs of dead workers go back to pending."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.benchmark.queue import reset_stale


class ResetStaleParams(ActionParams):
    older_than_minutes: int = Field(default=120, ge=1)
    max_attempts: int = Field(default=3, ge=1)


class ResetStaleOutputs(ActionOutputs):
    reset: int


class ResetStale(Action[ResetStaleParams, ResetStaleOutputs]):
    meta = ActionMeta(
        name="benchmark.reset_stale",
        description="Return running configs whose last heartbeat is older than the limit to "
        "pending (failed for good after max_attempts claims); completion is fenced on the "
        "claiming worker, so no config is completed twice.",
        idempotent=True,
    )
    Params = ResetStaleParams
    Outputs = ResetStaleOutputs

    def run(self, ctx: ActionContext, params: ResetStaleParams) -> ResetStaleOutputs:
        count = reset_stale(timedelta(minutes=params.older_than_minutes), params.max_attempts)
        ctx.log.info("reset %d stale config(s)", count)
        return ResetStaleOutputs(reset=count)
