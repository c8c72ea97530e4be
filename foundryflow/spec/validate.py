"""Whole-pipeline checks: graph, references and actions.

Every problem is collected (not just the first) and names the file and step it is in, so
one run of ``foundryflow validate`` tells an author everything to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from foundryflow.actions.registry import (
    ActionNotImplementedError,
    ActionRegistry,
    UnknownActionError,
)
from foundryflow.spec.model import EXECUTION_FIELDS, FINAL_EXECUTION_FIELDS, Pipeline, Step
from foundryflow.spec.templating import ROOTS, Reference, TemplateRenderError, references


@dataclass(frozen=True)
class Problem:
    source: str
    where: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.source}: {self.where}: {self.message}"
            if self.where
            else (f"{self.source}: {self.message}")
        )


class SpecError(ValueError):
    """A spec is invalid; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def problems_from_validation_error(source: str, raw: Any, error: ValidationError) -> list[Problem]:
    """Turn pydantic's locations (``steps.2.id``) into ones an author recognises."""
    problems = []
    for item in error.errors():
        loc = list(item["loc"])
        where = ".".join(str(part) for part in loc)
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            step = _raw_step(raw, loc[1])
            label = f"step {step!r}" if step else f"step #{loc[1] + 1}"
            rest = ".".join(str(part) for part in loc[2:])
            where = f"{label}: {rest}" if rest else label
        elif len(loc) >= 2 and loc[0] == "parameters" and isinstance(loc[1], int):
            name = _raw_name(raw, "parameters", loc[1])
            label = f"parameter {name!r}" if name else f"parameter #{loc[1] + 1}"
            rest = ".".join(str(part) for part in loc[2:])
            where = f"{label}: {rest}" if rest else label
        message = item["msg"].removeprefix("Value error, ")
        problems.append(Problem(source, where, message))
    return problems


def _raw_step(raw: Any, index: int) -> str | None:
    return _raw_name(raw, "steps", index, key="id")


def _raw_name(raw: Any, section: str, index: int, key: str = "name") -> str | None:
    try:
        value = raw[section][index][key]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) else None


def validate_pipeline(
    pipeline: Pipeline, registry: ActionRegistry, source: str, require_actions: bool = True
) -> list[Problem]:
    """All problems of ``pipeline``.

    ``require_actions=False`` tolerates actions that are registered but cannot be loaded
    yet: the graph can still be compiled (and shown in the Airflow UI), and the step fails
    at run time with the same "not implemented" message.
    """
    return _Checker(pipeline, registry, source, require_actions).run()


class _Checker:
    def __init__(
        self, pipeline: Pipeline, registry: ActionRegistry, source: str, require_actions: bool
    ) -> None:
        self.require_actions = require_actions
        self.pipeline = pipeline
        self.registry = registry
        self.source = source
        self.problems: list[Problem] = []
        self.steps = {step.id: step for step in pipeline.steps}
        self.parameters = {parameter.name for parameter in pipeline.parameters}

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.source, where, message))

    def run(self) -> list[Problem]:
        self._unique("step", [step.id for step in self.pipeline.steps])
        self._unique("parameter", [p.name for p in self.pipeline.parameters])
        self._dependencies()
        cycle = find_cycle({step.id: step.depends_on for step in self.pipeline.steps})
        if cycle:
            self.add("steps", "dependency cycle: " + " -> ".join(cycle))
        for step in self.pipeline.steps:
            self._action(step)
            self._references(step, cycle_free=not cycle)
        self._outputs()
        return self.problems

    def _unique(self, kind: str, names: list[str]) -> None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                self.add(
                    f"{kind} {name!r}", f"duplicate {kind} {(kind == 'step' and 'id') or 'name'}"
                )
            seen.add(name)

    def _dependencies(self) -> None:
        for step in self.pipeline.steps:
            for dep in step.depends_on:
                if dep == step.id:
                    self.add(f"step {step.id!r}", "depends on itself")
                elif dep not in self.steps:
                    self.add(f"step {step.id!r}", f"depends on unknown step {dep!r}")
                elif self.steps[dep].is_finally and not step.is_finally:
                    self.add(
                        f"step {step.id!r}",
                        f"depends on {dep!r}, which runs in the closing phase "
                        "(its condition reads execution.status)",
                    )

    def _action(self, step: Step) -> None:
        try:
            action = self.registry.get(step.action)
        except ActionNotImplementedError as exc:
            if self.require_actions:
                self.add(f"step {step.id!r}", str(exc))
            return
        except UnknownActionError as exc:
            known = ", ".join(self.registry.names()) or "none"
            self.add(f"step {step.id!r}", f"{exc} (known actions: {known})")
            return
        fields = action.Params.model_fields
        for key in step.params:
            if key not in fields:
                self.add(
                    f"step {step.id!r}",
                    f"action {step.action!r} has no parameter {key!r} "
                    f"(it takes: {', '.join(fields) or 'nothing'})",
                )
        for name, field in fields.items():
            if field.is_required() and name not in step.params:
                self.add(f"step {step.id!r}", f"action {step.action!r} needs parameter {name!r}")

    def _references(self, step: Step, cycle_free: bool) -> None:
        where = f"step {step.id!r}"
        upstream = self.upstream(step.id) if cycle_free else set()
        sections: list[tuple[str, Any]] = [
            ("params", step.params),
            ("condition", step.condition),
            ("foreach", step.foreach),
        ]
        for section, value in sections:
            for ref in self._references_in(f"{where}: {section}", value):
                message = self._reference_problem(step, section, ref, upstream, cycle_free)
                if message:
                    self.add(f"{where}: {section}", message)

    def _reference_problem(
        self, step: Step, section: str, ref: Reference, upstream: set[str], cycle_free: bool
    ) -> str | None:
        if ref.root not in ROOTS:
            return f"unknown name {ref.root!r} (templates read params, steps, execution, item)"
        if ref.root == "params":
            if not ref.path or ref.path[0] not in self.parameters:
                return f"{ref} refers to an undeclared parameter"
            return None
        if ref.root == "item":
            if step.foreach is None or section == "foreach":
                return "'item' is only defined inside a step with foreach"
            return None
        if ref.root == "execution":
            if not ref.path or ref.path[0] not in EXECUTION_FIELDS:
                return f"{ref} is not an execution field ({', '.join(sorted(EXECUTION_FIELDS))})"
            if ref.path[0] in FINAL_EXECUTION_FIELDS and not step.is_finally:
                return (
                    f"{ref} is only known in the closing phase; read it in the condition of a "
                    "step that runs there"
                )
            return None
        return self._step_reference_problem(step, ref, upstream, cycle_free)

    def _step_reference_problem(
        self, step: Step, ref: Reference, upstream: set[str], cycle_free: bool
    ) -> str | None:
        if len(ref.path) < 2 or ref.path[1] not in ("outputs", "status"):
            return f"{ref}: write steps.<id>.outputs.<name> or steps.<id>.status"
        target_id = ref.path[0]
        target = self.steps.get(target_id)
        if target is None:
            return f"{ref} refers to unknown step {target_id!r}"
        if target_id == step.id:
            return f"{ref}: a step cannot read its own outputs"
        if step.is_finally:
            if target.is_finally and target_id not in upstream:
                return f"{ref}: step {target_id!r} is not upstream of {step.id!r}"
        elif cycle_free and target_id not in upstream:
            return (
                f"{ref}: step {step.id!r} does not depend on {target_id!r} "
                "(add it to depends_on, directly or through another step)"
            )
        if ref.path[1] == "outputs" and len(ref.path) >= 3:
            outputs = self._outputs_fields(target)
            if outputs is not None and ref.path[2] not in outputs:
                return (
                    f"{ref}: action {target.action!r} has no output {ref.path[2]!r} "
                    f"(it returns: {', '.join(outputs) or 'nothing'})"
                )
        return None

    def _outputs_fields(self, step: Step) -> list[str] | None:
        if self.registry.status(step.action) is not None:
            return None
        return list(self.registry.get(step.action).Outputs.model_fields)

    def _references_in(self, where: str, value: Any) -> list[Reference]:
        """References of ``value``; a template that does not parse is itself a problem."""
        try:
            return list(references(value))
        except TemplateRenderError as exc:
            self.add(where, str(exc))
            return []

    def _outputs(self) -> None:
        for name, value in self.pipeline.outputs.items():
            for ref in self._references_in(f"output {name!r}", value):
                if ref.root == "params" and (not ref.path or ref.path[0] not in self.parameters):
                    self.add(f"output {name!r}", f"{ref} refers to an undeclared parameter")
                elif ref.root == "steps" and (not ref.path or ref.path[0] not in self.steps):
                    self.add(f"output {name!r}", f"{ref} refers to an unknown step")
                elif ref.root not in ("params", "steps", "execution"):
                    self.add(f"output {name!r}", f"unknown name {ref.root!r}")

    def upstream(self, step_id: str) -> set[str]:
        """Every step ``step_id`` depends on, directly or transitively."""
        seen: set[str] = set()
        stack = list(self.steps[step_id].depends_on) if step_id in self.steps else []
        while stack:
            current = stack.pop()
            if current in seen or current not in self.steps:
                continue
            seen.add(current)
            stack.extend(self.steps[current].depends_on)
        return seen


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One dependency cycle as a closed path (``a -> b -> a``), or None; iterative DFS."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in graph:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(graph.get(root, ())))]
        state[root] = 1
        path.append(root)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif child not in graph:
                continue
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(graph[child])))
    return None


def topological_order(steps: Iterable[Step]) -> list[Step]:
    """Steps ordered so that dependencies come first (stable for independent steps)."""
    pending = {step.id: step for step in steps}
    done: set[str] = set()
    ordered: list[Step] = []
    while pending:
        ready = [
            s for s in pending.values() if all(d in done or d not in pending for d in s.depends_on)
        ]
        if not ready:
            raise ValueError("dependency cycle")
        for step in ready:
            ordered.append(step)
            done.add(step.id)
            del pending[step.id]
    return ordered
