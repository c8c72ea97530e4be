"""Surfaces broken pipeline specs as an Airflow import error listing every problem.

Kept apart from ``foundryflow_pipelines.py`` so that one broken spec shows up in the UI
without taking the valid pipelines' DAGs down with it.
"""

from foundryflow.spec.loader import PipelineCatalog
from foundryflow.spec.validate import SpecError

_, _problems = PipelineCatalog(require_actions=False).scan()
if _problems:
    raise SpecError(_problems)
