"""Small, real actions for the test suite: arithmetic, failure, a Redis-backed resource
that rollback must delete, and a sleep for progress views."""

from __future__ import annotations

import os
import signal
import time
from typing import Any, ClassVar

import redis

from foundryflow.actions import (
    Action,
    ActionContext,
    ActionMeta,
    ActionOutputs,
    ActionParams,
)
from foundryflow.benchmark.runners import BaseRunner, BenchmarkCell, RunnerOptions
from foundryflow.config import get_settings

RESOURCE_PREFIX = "foundryflow-test:resource:"
RESOURCE_LOG_PREFIX = "foundryflow-test:resource-log:"
"""One list per execution of what test.resource created and deleted, in order."""


class EchoParams(ActionParams):
    value: Any = None


class EchoOutputs(ActionOutputs):
    value: Any = None


class Echo(Action[EchoParams, EchoOutputs]):
    meta = ActionMeta(name="test.echo", description="Returns its input.", idempotent=True)
    Params = EchoParams
    Outputs = EchoOutputs

    def run(self, ctx: ActionContext, params: EchoParams) -> EchoOutputs:
        return EchoOutputs(value=params.value)


class AddParams(ActionParams):
    a: int
    b: int = 0


class AddOutputs(ActionOutputs):
    total: int


class Add(Action[AddParams, AddOutputs]):
    meta = ActionMeta(name="test.add", description="Adds two integers.", idempotent=True)
    Params = AddParams
    Outputs = AddOutputs

    def run(self, ctx: ActionContext, params: AddParams) -> AddOutputs:
        return AddOutputs(total=params.a + params.b)


class FailParams(ActionParams):
    message: str = "boom"


class Fail(Action[FailParams, ActionOutputs]):
    meta = ActionMeta(name="test.fail", description="Always raises.")
    Params = FailParams
    Outputs = ActionOutputs

    def run(self, ctx: ActionContext, params: FailParams) -> ActionOutputs:
        raise RuntimeError(params.message)


class ResourceParams(ActionParams):
    name: str
    fail_compensation: bool = False


class ResourceOutputs(ActionOutputs):
    key: str


class Resource(Action[ResourceParams, ResourceOutputs]):
    """Creates a Redis key standing for an external resource; compensation deletes it."""

    meta = ActionMeta(name="test.resource", description="Creates a resource (a Redis key).")
    Params = ResourceParams
    Outputs = ResourceOutputs

    def _redis(self) -> redis.Redis:
        url = get_settings().redis_url
        assert url, "FOUNDRYFLOW_REDIS_URL must be set for test.resource"
        return redis.Redis.from_url(url)

    def run(self, ctx: ActionContext, params: ResourceParams) -> ResourceOutputs:
        key = f"{RESOURCE_PREFIX}{ctx.execution_id}:{params.name}"
        self._redis().rpush(f"{RESOURCE_LOG_PREFIX}{ctx.execution_id}", f"create {params.name}")
        self._redis().set(key, "1")
        return ResourceOutputs(key=key)

    def compensate(
        self, ctx: ActionContext, params: ResourceParams, outputs: ResourceOutputs
    ) -> None:
        if params.fail_compensation:
            raise RuntimeError(f"cannot delete {params.name}")
        self._redis().rpush(f"{RESOURCE_LOG_PREFIX}{ctx.execution_id}", f"delete {params.name}")
        self._redis().delete(outputs.key)


class SleepParams(ActionParams):
    seconds: float = 0.1


class Sleep(Action[SleepParams, ActionOutputs]):
    meta = ActionMeta(name="test.sleep", description="Sleeps.", idempotent=True)
    Params = SleepParams
    Outputs = ActionOutputs

    def run(self, ctx: ActionContext, params: SleepParams) -> ActionOutputs:
        time.sleep(params.seconds)
        return ActionOutputs()


class FixedRunnerOptions(RunnerOptions):
    sleep_ms: int = 0
    fail_batch_size: int | None = None
    """Cells of this batch size raise, so retries and final failures can be tested."""
    sigterm_after: int | None = None
    """Send SIGTERM to this process after that many runs: a pod told to stop mid-batch."""


class FixedRunner(BaseRunner[FixedRunnerOptions]):
    """A benchmark runner with metrics derived from the cell: fast and checkable."""

    name: ClassVar[str] = "test-fixed"
    Options: ClassVar[type[RunnerOptions]] = FixedRunnerOptions

    runs = 0

    def run(self, cell: BenchmarkCell) -> dict[str, Any]:
        options = self.options
        self.runs += 1
        if self.runs == options.sigterm_after:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(options.sleep_ms / 1000)
        if cell.batch_size == options.fail_batch_size:
            raise RuntimeError(f"batch size {cell.batch_size} is configured to fail")
        return {"tokens_per_second": cell.batch_size * 100.0, "ttft_ms": cell.sequence_length / 10}
