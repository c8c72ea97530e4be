"""Custom Airflow operators: thin adapters from Airflow tasks to the foundryflow runtime."""

from operators.action import ActionOperator, FanoutOperator
from operators.lifecycle import FinishExecutionOperator, RollbackOperator, StartExecutionOperator

__all__ = [
    "ActionOperator",
    "FanoutOperator",
    "FinishExecutionOperator",
    "RollbackOperator",
    "StartExecutionOperator",
]
