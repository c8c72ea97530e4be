"""How an Airflow task finds its execution: derived from the DAG run, never passed around."""

from __future__ import annotations

from uuid import UUID

from airflow.sdk import Context

from foundryflow.runtime import execution_id_for

ENGINE = "airflow"


def run_key(context: Context) -> str:
    return f"{context['dag'].dag_id}/{context['run_id']}"


def execution_id(context: Context) -> UUID:
    return execution_id_for(ENGINE, run_key(context))
