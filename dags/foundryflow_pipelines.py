"""One Airflow DAG per pipeline spec (``pipelines/*.yaml``); compiled by foundryflow.

Thin on purpose: reading YAML is all that happens at parse time.
"""

from foundryflow.compile.airflow import build_dags

globals().update(build_dags())
