"""``ActionOperator``: one pipeline step as an Airflow task.

The operator holds only the step id; templates, condition, params validation and state
all belong to :func:`foundryflow.runtime.run_step`, so an Airflow task and an Argo pod
running the same step behave identically. Spec templates (``{{ params.x }}``) are not
Airflow template fields: Airflow never renders them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from foundryflow.runtime import fanout, run_step
from foundryflow.store.models import StepStatus
from operators._execution import execution_id


class ActionOperator(BaseOperator):
    """Run step ``step_id`` of this DAG run's execution (one item of it when mapped)."""

    ui_color = "#dbeafe"
    template_fields = ()

    def __init__(self, *, step_id: str, action: str, item_index: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.step_id = step_id
        self.action = action
        self.item_index = item_index

    def execute(self, context: Context) -> None:
        outcome = run_step(execution_id(context), self.step_id, self.item_index)
        label = self.step_id if self.item_index is None else f"{self.step_id}[{self.item_index}]"
        if outcome.status == StepStatus.SKIPPED:
            raise AirflowSkipException(f"step {label} skipped: {outcome.error}")
        if outcome.status == StepStatus.FAILED:
            # Fail, not retry: the seed forbids automatic retries of non-idempotent steps.
            raise AirflowFailException(f"step {label} ({self.action}) failed: {outcome.error}")
        self.log.info("step %s completed; outputs: %s", label, outcome.outputs)


class FanoutOperator(BaseOperator):
    """Render a ``foreach`` step's items; returns their indices for ``.expand()``.

    Only indices travel through XCom; the items themselves stay in PostgreSQL.
    """

    ui_color = "#ede9fe"
    template_fields = ()

    def __init__(self, *, step_id: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.step_id = step_id

    def execute(self, context: Context) -> list[int]:
        indices = fanout(execution_id(context), self.step_id)
        self.log.info("step %s fans out over %d items", self.step_id, len(indices))
        return indices
