"""The tasks the compiler adds around the steps: start, rollback, finish."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from foundryflow.runtime import finish_execution, rollback, start_execution
from foundryflow.spec.model import Pipeline
from foundryflow.spec.params import ParamsError
from foundryflow.store.models import ExecutionStatus, RollbackStatus
from operators._execution import ENGINE, execution_id, run_key


class StartExecutionOperator(BaseOperator):
    """Validate the run's params and record the execution with the spec pinned.

    The spec travels inside the serialized DAG, so the run uses exactly the spec the DAG
    was compiled from even if the YAML changes while it runs.
    """

    ui_color = "#dcfce7"
    template_fields = ()

    def __init__(self, *, spec: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec

    def execute(self, context: Context) -> str:
        pipeline = Pipeline.model_validate(self.spec)
        params = dict(context["params"].items())
        try:
            started = start_execution(
                pipeline, params, engine=ENGINE, engine_run_id=run_key(context)
            )
        except ParamsError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("execution %s started", started)
        return str(started)


class RollbackOperator(BaseOperator):
    """Compensate completed steps, in reverse order, when any step failed; else skip."""

    ui_color = "#fee2e2"
    template_fields = ()

    def execute(self, context: Context) -> None:
        outcome = rollback(execution_id(context))
        if not outcome.needed:
            raise AirflowSkipException("nothing failed: no rollback needed")
        self.log.info("compensated (in order): %s", ", ".join(outcome.compensated) or "nothing")
        if outcome.status == RollbackStatus.FAILED:
            raise AirflowFailException("rollback incomplete: " + "; ".join(outcome.errors))


class FinishExecutionOperator(BaseOperator):
    """Record the final status and outputs; fails the DAG run when the execution failed."""

    ui_color = "#f3f4f6"
    template_fields = ()

    def execute(self, context: Context) -> None:
        finished = finish_execution(execution_id(context))
        if finished.status == ExecutionStatus.FAILED:
            raise AirflowFailException(f"execution failed: {finished.error}")
        self.log.info("execution completed; outputs: %s", finished.outputs)
