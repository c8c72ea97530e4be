"""Airflow plugin: foundryflow's status API, served by the Airflow API server.

Mounted at ``/foundryflow``; it reads executions from PostgreSQL, so it reports runs
started from Argo exactly like runs started from Airflow.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from foundryflow.api import create_app


class FoundryflowPlugin(AirflowPlugin):
    name = "foundryflow"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": "/foundryflow", "name": "foundryflow status API"}
    ]
