"""The one place where steps run: identical on Airflow, Argo and the CLI.

Engines only decide *when* a step runs (Airflow, Argo, and ``run_inline`` / ``work_loop``
for the runner pods of pipeline deployments); ``run_step`` decides *what* happens: it resolves
templates, evaluates the condition, validates params, calls the action and records the
outcome in PostgreSQL.
"""

from foundryflow.runtime.executions import (
    ExecutionNotFoundError,
    cancel_execution,
    execution_id_for,
    finish_execution,
    start_execution,
)
from foundryflow.runtime.inline import InlineResult, run_inline, work_loop
from foundryflow.runtime.progress import ExecutionProgress, progress
from foundryflow.runtime.rollback import RollbackOutcome, rollback
from foundryflow.runtime.steps import StepOutcome, fanout, run_step

__all__ = [
    "ExecutionNotFoundError",
    "ExecutionProgress",
    "InlineResult",
    "RollbackOutcome",
    "StepOutcome",
    "cancel_execution",
    "execution_id_for",
    "fanout",
    "finish_execution",
    "progress",
    "rollback",
    "run_inline",
    "run_step",
    "start_execution",
    "work_loop",
]
