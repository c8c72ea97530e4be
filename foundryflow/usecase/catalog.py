"""The component catalog: what a selection such as ``qdrant`` or ``llama-3-8b`` deploys.

Templates name components by short names (seed 004: ``default_component: qdrant``); the
catalog (``usecases/catalog/components.yaml``) says which chart and values each one is, so
a ``vector_db`` slot and a ``helm`` slot end up as the same thing, a checked Helm release.
Entries pass the same chart-reference and values checks as template charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from foundryflow.problems import validation_problems
from foundryflow.usecase.chart_security import ChartRef, check_values, parse_chart_ref
from foundryflow.usecase.template import TEMPLATES_DIR, UseCaseTemplate, UseCaseTemplateError

CATALOG_FILE = TEMPLATES_DIR / "catalog" / "components.yaml"

SelectableType = Literal["model", "llm", "embedder", "reranker", "vector_db", "memory_store"]


class CatalogEntry(BaseModel):
    """One selectable component: the chart that runs it and the values that make it so."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: list[SelectableType] = Field(min_length=1)
    description: str = ""
    chart: str
    version: str | None = None
    values: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _safe(self) -> CatalogEntry:
        self.parsed.release_fields(self.version)
        check_values(self.values, where=f"catalog chart {self.chart} values")
        return self

    @property
    def parsed(self) -> ChartRef:
        return parse_chart_ref(self.chart)


class ComponentCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    components: dict[str, CatalogEntry]

    def entry(self, name: str) -> CatalogEntry:
        try:
            return self.components[name]
        except KeyError:
            known = ", ".join(sorted(self.components))
            raise KeyError(f"no component {name!r} in the catalog (known: {known})") from None

    def check_template(self, template: UseCaseTemplate) -> None:
        """Every selectable component of ``template`` exists here with a matching type."""
        problems = []
        for component in template.components:
            for choice in component.compatible_components:
                entry = self.components.get(choice)
                if entry is None:
                    problems.append(
                        f"component {component.name!r}: {choice!r} is not in the component "
                        f"catalog {CATALOG_FILE.name}"
                    )
                elif component.type not in entry.types:
                    problems.append(
                        f"component {component.name!r}: {choice!r} is a "
                        f"{'/'.join(entry.types)}, not a {component.type}"
                    )
        if problems:
            raise UseCaseTemplateError(template.name, problems)


def load_catalog(path: Path = CATALOG_FILE) -> ComponentCatalog:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ComponentCatalog.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise UseCaseTemplateError(
            str(path), [f"cannot read the component catalog: {exc}"]
        ) from None
    except ValidationError as exc:
        problems = [f"{where}: {message}" for where, message in validation_problems(exc, empty="")]
        raise UseCaseTemplateError(str(path), problems) from None
