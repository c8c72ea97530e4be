"""Progress pages of executions and of the benchmark matrix, served by the Airflow plugin
(``/foundryflow/ui/...``) and listed in the Airflow UI's menu; see :mod:`.routes`."""

from foundryflow.ui.routes import router

__all__ = ["router"]
