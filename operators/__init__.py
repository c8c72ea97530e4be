"""Custom Airflow operators: thin adapters from Airflow tasks to the foundryflow runtime
(generated pipeline DAGs) and named ones for hand-written DAGs (onboarding, simulation, Helm
install, Redis sync)."""

from operators.action import ActionOperator, FanoutOperator
from operators.guardrail import OnboardModelsOperator, RedisConfigSyncOperator, SimulateOperator
from operators.helm import HelmInstallOperator
from operators.lifecycle import FinishExecutionOperator, RollbackOperator, StartExecutionOperator

__all__ = [
    "ActionOperator",
    "FanoutOperator",
    "FinishExecutionOperator",
    "HelmInstallOperator",
    "OnboardModelsOperator",
    "RedisConfigSyncOperator",
    "RollbackOperator",
    "SimulateOperator",
    "StartExecutionOperator",
]
