"""The pipelines of the use-case templates: one per template in ``usecases/``.

They are generated, not written: :func:`scan` builds every template's pipeline (for the
Airflow DAG files and ``usecase validate``) and reports every broken template without
hiding the others; :func:`usecase_pipeline` finds one by its pipeline name (``usecase-
<template>``), for an Argo pod starting a run of it.
"""

from __future__ import annotations

from pathlib import Path

from foundryflow.spec.model import Pipeline
from foundryflow.spec.validate import SpecError
from foundryflow.usecase.builder import build_pipeline
from foundryflow.usecase.catalog import load_catalog
from foundryflow.usecase.template import (
    TEMPLATES_DIR,
    UseCaseTemplateError,
    load_template,
    template_files,
)

PIPELINE_PREFIX = "usecase-"


def scan(folder: Path = TEMPLATES_DIR) -> tuple[dict[str, Pipeline], list[str]]:
    """Every valid template's pipeline by name, and the problems of every other file."""
    try:
        catalog = load_catalog()
    except UseCaseTemplateError as exc:
        return {}, [str(exc)]
    pipelines: dict[str, Pipeline] = {}
    problems: list[str] = []
    for path in template_files(folder):
        try:
            pipeline = build_pipeline(load_template(path), catalog)
        except UseCaseTemplateError as exc:
            problems.append(str(exc))
            continue
        except SpecError as exc:
            problems.extend(f"{path}: {problem}" for problem in exc.problems)
            continue
        if pipeline.name in pipelines:
            problems.append(f"{path}: template name {pipeline.name!r} is used twice")
            continue
        pipelines[pipeline.name] = pipeline
    return pipelines, problems


def usecase_pipeline(name: str, folder: Path = TEMPLATES_DIR) -> Pipeline:
    pipelines, problems = scan(folder)
    if name in pipelines:
        return pipelines[name]
    hint = f"; template problems: {'; '.join(problems)}" if problems else ""
    known = ", ".join(sorted(pipelines)) or "none"
    raise KeyError(f"no use-case pipeline named {name!r} (known: {known}){hint}")
