"""Reading pipeline specs from YAML files and finding them by name."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from foundryflow.actions.registry import ActionRegistry
from foundryflow.actions.registry import registry as default_registry
from foundryflow.config import get_settings
from foundryflow.spec.model import Pipeline
from foundryflow.spec.validate import (
    Problem,
    SpecError,
    problems_from_validation_error,
    validate_pipeline,
)

SPEC_SUFFIXES = (".yaml", ".yml")


def parse_pipeline(
    raw: Any, source: str, registry: ActionRegistry | None = None, require_actions: bool = True
) -> Pipeline:
    """Build and fully validate a pipeline from already-parsed YAML/JSON data."""
    if not isinstance(raw, dict):
        raise SpecError([Problem(source, "", "a pipeline spec must be a mapping")])
    try:
        pipeline = Pipeline.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from_validation_error(source, raw, exc)) from None
    problems = validate_pipeline(pipeline, registry or default_registry, source, require_actions)
    if problems:
        raise SpecError(problems)
    return pipeline


def load_pipeline(
    path: Path, registry: ActionRegistry | None = None, require_actions: bool = True
) -> Pipeline:
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError([Problem(source, "", f"cannot read spec: {exc}")]) from None
    return parse_pipeline(raw, source, registry, require_actions)


def spec_files(folders: Iterable[Path]) -> list[Path]:
    return sorted(
        path
        for folder in folders
        if folder.is_dir()
        for path in folder.iterdir()
        if path.suffix in SPEC_SUFFIXES and path.is_file()
    )


class PipelineCatalog:
    """All specs of the configured folders, by name; loads lazily and reports every problem."""

    def __init__(
        self,
        folders: Iterable[Path] | None = None,
        registry: ActionRegistry | None = None,
        require_actions: bool = True,
    ) -> None:
        self.folders = list(folders) if folders is not None else get_settings().pipelines_path
        self.registry = registry or default_registry
        self.require_actions = require_actions

    def scan(self) -> tuple[dict[str, Pipeline], list[Problem]]:
        """Every valid pipeline by name, and the problems of every other file."""
        pipelines: dict[str, Pipeline] = {}
        sources: dict[str, Path] = {}
        problems: list[Problem] = []
        for path in spec_files(self.folders):
            try:
                pipeline = load_pipeline(path, self.registry, self.require_actions)
            except SpecError as exc:
                problems.extend(exc.problems)
                continue
            if pipeline.name in pipelines:
                other = sources[pipeline.name]
                problems.append(
                    Problem(str(path), "name", f"pipeline {pipeline.name!r} is also in {other}")
                )
                continue
            pipelines[pipeline.name] = pipeline
            sources[pipeline.name] = path
        return pipelines, problems

    def load(self) -> dict[str, Pipeline]:
        """Every pipeline by name; raises SpecError listing the problems of all files."""
        pipelines, problems = self.scan()
        if problems:
            raise SpecError(problems)
        return pipelines

    def load_valid(self) -> list[Pipeline]:
        """The pipelines that are valid, so one broken file does not hide the others."""
        return list(self.scan()[0].values())

    def _named_specs(self) -> Iterable[tuple[str, Path, dict[str, Any]]]:
        """(name, path, raw) of every readable spec; unreadable ones surface in ``load``."""
        for path in spec_files(self.folders):
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                yield raw["name"], path, raw

    def get(self, name: str) -> Pipeline:
        """One pipeline by name, validated; other (possibly broken) files are not read."""
        for found, path, raw in self._named_specs():
            if found == name:
                return parse_pipeline(raw, str(path), self.registry, self.require_actions)
        known = ", ".join(sorted(self.names())) or "none"
        folders = ", ".join(map(str, self.folders))
        raise KeyError(f"no pipeline named {name!r} in {folders} (known: {known})")

    def names(self) -> list[str]:
        return [name for name, _, _ in self._named_specs()]
