"""One Airflow DAG per use-case template (``usecases/*.yaml``): its deploy form.

Thin on purpose: reading the templates and building their specs is all that happens at
parse time (no database, no network).
"""

from foundryflow.compile.airflow import build_dag
from foundryflow.usecase.pipelines import scan

globals().update({name: build_dag(pipeline) for name, pipeline in scan()[0].items()})
