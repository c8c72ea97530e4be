"""``benchmark.drain_queue``: one worker of the matrix; run as N Argo pods or mapped tasks."""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.benchmark.runners import get_runner
from foundryflow.benchmark.worker import DrainSummary, drain, stop_on_signals


class DrainParams(ActionParams):
    worker_id: str = Field(min_length=1, max_length=200)
    model_version_id: int | None = None
    batch: int = Field(default=10, ge=1, le=10_000)
    runner: str = "simulate"
    runner_options: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = Field(default=3, ge=1)


class DrainOutputs(ActionOutputs):
    claimed: int
    completed: int
    failed: int
    fenced: int
    released: int
    seconds: float


class DrainQueue(Action[DrainParams, DrainOutputs]):
    meta = ActionMeta(
        name="benchmark.drain_queue",
        description="Claim configs with FOR UPDATE SKIP LOCKED and run them with the chosen "
        "runner until none is pending; safe to run as many times in parallel as wanted.",
        idempotent=True,
    )
    Params = DrainParams
    Outputs = DrainOutputs

    def run(self, ctx: ActionContext, params: DrainParams) -> DrainOutputs:
        # Options are checked before the first claim: a typo must not fail every config.
        runner = get_runner(params.runner, **params.runner_options)

        def report(summary: DrainSummary) -> None:
            ctx.log.info("worker %s: %s", params.worker_id, summary)

        stop = threading.Event()
        with stop_on_signals(stop):
            summary = drain(
                params.worker_id,
                runner,
                batch=params.batch,
                model_version_id=params.model_version_id,
                stop=stop,
                on_progress=report,
                max_attempts=params.max_attempts,
            )
        if stop.is_set():
            # The queue is consistent (results recorded, the rest released); the step still
            # fails, so the pipeline does not summarise a matrix that was not drained.
            raise RuntimeError(
                f"worker {params.worker_id} was stopped by a signal: {summary.completed} "
                f"completed, {summary.released} released back to the queue"
            )
        ctx.log.info("worker %s drained: %s", params.worker_id, summary)
        return DrainOutputs(**asdict(summary) | {"seconds": round(summary.seconds, 3)})
