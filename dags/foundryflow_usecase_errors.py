"""Surfaces broken use-case templates as an Airflow import error listing every problem,
apart from ``foundryflow_usecases.py`` so the valid templates keep their DAGs."""

from foundryflow.usecase.pipelines import scan

_, _problems = scan()
if _problems:
    raise ValueError("use-case template problems:\n" + "\n".join(_problems))
