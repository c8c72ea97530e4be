"""Airflow plugin: foundryflow's status API and progress pages, served by the Airflow API
server, and the pages' entries in the Airflow UI.

Mounted at ``/foundryflow``; it reads executions from PostgreSQL, so it reports runs
started from Argo exactly like runs started from Airflow.

``external_views`` (Airflow 3.1+) put the pages in the UI, rendered in an iframe: two
entries of a "foundryflow" menu, and a "foundryflow progress" tab on every DAG run, which
the UI fills in with ``{DAG_ID}`` and ``{RUN_ID}`` (URL-encoded) and which redirects to
the execution that run recorded. ``href``s are relative (no leading slash), so they
follow the API server's base URL.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from foundryflow.api import create_app

URL_PREFIX = "/foundryflow"
CATEGORY = "foundryflow"


class FoundryflowPlugin(AirflowPlugin):
    name = "foundryflow"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "foundryflow status API"}
    ]
    external_views = [
        {
            "name": "Pipeline executions",
            "href": "foundryflow/ui/executions",
            "destination": "nav",
            "url_route": "foundryflow-executions",
            "category": CATEGORY,
        },
        {
            "name": "Benchmark matrix",
            "href": "foundryflow/ui/matrix",
            "destination": "nav",
            "url_route": "foundryflow-matrix",
            "category": CATEGORY,
        },
        {
            "name": "foundryflow progress",
            "href": "foundryflow/ui/airflow-run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "foundryflow-run",
        },
    ]
