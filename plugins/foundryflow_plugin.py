"""Airflow plugin: foundryflow's status API and progress pages, served by the Airflow API
server, and the pages' entries in the Airflow UI.

Mounted at ``/foundryflow``; it reads executions from PostgreSQL, so it reports runs
started from Argo exactly like runs started from Airflow. Its routes require an Airflow
user: the UI's session cookie (so the pages work in the UI's iframes) or a bearer JWT from
``/auth/token``; only ``/metrics`` stays open for Prometheus.

``external_views`` (Airflow 3.1+) put the pages in the UI, rendered in an iframe: two
entries of a "foundryflow" menu, and a "foundryflow progress" tab on every DAG run, which
the UI fills in with ``{DAG_ID}`` and ``{RUN_ID}`` (URL-encoded) and which redirects to
the execution that run recorded. ``href``s are relative (no leading slash), so they
follow the API server's base URL.
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends

from foundryflow.api import create_app

URL_PREFIX = "/foundryflow"
CATEGORY = "foundryflow"


class FoundryflowPlugin(AirflowPlugin):
    name = "foundryflow"
    fastapi_apps = [
        {
            # Airflow leaves plugin apps open; ours change deployments and cancel runs, so
            # every route needs an Airflow user (session cookie or bearer JWT), /metrics aside
            "app": create_app(auth=[Depends(requires_authenticated())]),
            "url_prefix": URL_PREFIX,
            "name": "foundryflow status API",
        }
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
