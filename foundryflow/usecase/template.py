"""Use-case templates (seed 004): a use case as a set of components and its parameters.

A template is a YAML file in ``usecases/``. It is checked here, completely, before any DAG is
built from it: everything a deployment could trip over later (a chart reference of the
wrong shape, values that ask for the host, a reference to a component that is not
deployed first, a dependency cycle) is a template error with the template's name and the
component it concerns, so an author fixes it once instead of every user meeting it at
deploy time.

Chart values may read two things, in the pipeline templates' syntax:

- ``{{ parameters.<name> }}``: a parameter of the template (bounded, typed);
- ``{{ steps.<component>.outputs.<output> }}``: what a component deployed earlier reports
  (:data:`COMPONENT_OUTPUTS`), e.g. the LLM's ``endpoint_url`` for the agent runtime.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import yaml
from jinja2 import TemplateError, nodes
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from foundryflow.config import REPO_ROOT
from foundryflow.spec.templating import ENV, TemplateRenderError, references
from foundryflow.spec.validate import find_cycle
from foundryflow.usecase.chart_security import (
    ChartRef,
    UnsafeValuesError,
    check_values,
    parse_chart_ref,
)

TEMPLATES_DIR = REPO_ROOT / "usecases"
"""Where the shipped templates live; one YAML file per template."""

ComponentType = Literal["model", "llm", "embedder", "reranker", "vector_db", "memory_store", "helm"]
MODEL_TYPES: frozenset[str] = frozenset({"model", "llm", "embedder", "reranker"})

COMPONENT_OUTPUTS: frozenset[str] = frozenset(
    {"job_id", "namespace", "release_name", "endpoint_url", "services"}
)
"""What every component step reports (the ``helm_deploy`` outputs of the seed)."""

RESERVED_NAMES: frozenset[str] = frozenset(
    {"cluster", "deployment_name", "deployment_id", "callback_topics", "created_by"}
)
"""Run parameters every use-case pipeline has; components and parameters cannot take them."""
RESERVED_STEPS: frozenset[str] = frozenset({"cluster_health", "notify_complete"})

COMPONENT_NAME = r"^[a-z][a-z0-9_]{0,21}$"
"""A step id short enough that ``<deployment>-<component>`` stays a Helm release name."""
TEMPLATE_NAME = r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$"
"""Leaves room for the ``usecase-`` prefix of the pipeline (and DAG) name."""
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi)?$"


class UseCaseTemplateError(ValueError):
    """A template that cannot be used; ``problems`` lists every one found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HelmChart(_Strict):
    """Where a ``helm`` component's chart comes from, and its default values."""

    ref: str = Field(description="oci://host/path/chart, https://host/repo/chart or charts/<name>")
    version: str | None = Field(default=None, description="Exact version; remote charts only.")
    values: dict[str, JsonValue] = Field(default_factory=dict)
    timeout_seconds: int = Field(default=600, ge=30, le=3600)

    @model_validator(mode="after")
    def _safe(self) -> HelmChart:
        self.parsed.release_fields(self.version)  # exact version for remote, none for local
        check_values(self.values, where=f"chart {self.ref} values")
        return self

    @property
    def parsed(self) -> ChartRef:
        return parse_chart_ref(self.ref)


class Component(_Strict):
    """One slot of a use case (seed: TemplateComponentSchema)."""

    name: Annotated[str, StringConstraints(pattern=COMPONENT_NAME)]
    display_name: str = ""
    description: str = ""
    type: ComponentType
    required: bool = True
    default_component: str | None = None
    compatible_components: list[str] = Field(default_factory=list)
    chart: HelmChart | None = None

    @model_validator(mode="after")
    def _shape(self) -> Component:
        if self.type == "helm":
            if self.chart is None:
                raise ValueError("'chart' is required when type is 'helm'")
            if self.compatible_components or self.default_component:
                raise ValueError(
                    "a helm component deploys its chart: it takes no compatible_components "
                    "or default_component"
                )
            return self
        if self.chart is not None:
            raise ValueError(f"'chart' is only for type 'helm', not {self.type!r}")
        if not self.compatible_components:
            raise ValueError(f"a {self.type} component needs compatible_components to pick from")
        if len(set(self.compatible_components)) != len(self.compatible_components):
            raise ValueError("compatible_components lists a component twice")
        if (
            self.default_component is not None
            and self.default_component not in self.compatible_components
        ):
            raise ValueError(
                f"default_component {self.default_component!r} is not one of "
                f"compatible_components {self.compatible_components}"
            )
        return self

    @property
    def title(self) -> str:
        return self.display_name or self.name.replace("_", " ")


class TemplateParameter(_Strict):
    """A tunable of the use case, with the bounds the trigger form enforces."""

    type: Literal["integer", "number", "string", "boolean"] = "string"
    default: Any = None
    min: float | None = None
    max: float | None = None
    enum: list[Any] | None = Field(default=None, min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> TemplateParameter:
        if (self.min is not None or self.max is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError(f"min/max apply to numbers, not to a {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        if self.default is not None:
            check_parameter_value(self, self.default, "default")
        for choice in self.enum or []:
            check_parameter_value(self.model_copy(update={"enum": None}), choice, "enum value")
        return self


def check_parameter_value(parameter: TemplateParameter, value: Any, what: str = "value") -> None:
    """Type, bounds and choices of one parameter value (bools are not numbers)."""
    types: dict[str, tuple[type, ...]] = {
        "integer": (int,),
        "number": (int, float),
        "string": (str,),
        "boolean": (bool,),
    }
    if isinstance(value, bool) != (parameter.type == "boolean") or not isinstance(
        value, types[parameter.type]
    ):
        raise ValueError(f"{what} {value!r} is not of type {parameter.type}")
    if parameter.type in ("integer", "number"):
        number = float(cast(float, value))
        if parameter.min is not None and number < parameter.min:
            raise ValueError(f"{what} {value!r} is below the minimum {parameter.min:g}")
        if parameter.max is not None and number > parameter.max:
            raise ValueError(f"{what} {value!r} is above the maximum {parameter.max:g}")
    if parameter.enum is not None and value not in parameter.enum:
        raise ValueError(f"{what} {value!r} is not one of {parameter.enum}")


class ResourceAmount(_Strict):
    cpu: float = Field(gt=0, description="Cores.")
    memory: Annotated[str, StringConstraints(pattern=QUANTITY)] = Field(description="e.g. 16Gi")
    gpu: int = Field(default=0, ge=0)


class Resources(_Strict):
    minimum: ResourceAmount
    recommended: ResourceAmount | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Resources:
        high = self.recommended
        if high is not None and (high.cpu < self.minimum.cpu or high.gpu < self.minimum.gpu):
            raise ValueError("recommended resources are below the minimum")
        return self


class UseCaseTemplate(_Strict):
    """A whole template (seed 004, "Example: Agent RAG Template")."""

    name: Annotated[str, StringConstraints(pattern=TEMPLATE_NAME)]
    display_name: str = ""
    version: str = "1.0.0"
    description: str = ""
    category: str = ""
    tags: list[str] = Field(default_factory=list)
    components: list[Component] = Field(min_length=1)
    parameters: dict[str, TemplateParameter] = Field(default_factory=dict)
    resources: Resources | None = None
    deployment_order: list[str] | None = Field(
        default=None,
        description="Deploy one after another in this order; without it, components deploy "
        "as soon as the components their values read are up (independent ones in parallel).",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )

    @model_validator(mode="after")
    def _whole(self) -> UseCaseTemplate:
        problems = list(_template_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def pipeline_name(self) -> str:
        """The pipeline (Airflow DAG, Argo WorkflowTemplate) deploying this template."""
        return f"usecase-{self.name}"

    def component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(f"template {self.name!r} has no component {name!r}")

    @property
    def ordered_components(self) -> list[Component]:
        if self.deployment_order is None:
            return list(self.components)
        return [self.component(name) for name in self.deployment_order]

    def upstream(self) -> dict[str, list[str]]:
        """Each component's direct dependencies: the previous one in ``deployment_order``,
        or (without it) the components its values read."""
        if self.deployment_order is not None:
            order = self.deployment_order
            return {name: order[i - 1 : i] for i, name in enumerate(order)}
        return {c.name: sorted(component_reads(c)) for c in self.components}


def component_reads(component: Component) -> set[str]:
    """The components whose outputs ``component``'s values read."""
    if component.chart is None:
        return set()
    return {ref.path[0] for ref in references(component.chart.values) if ref.root == "steps"}


def _template_problems(template: UseCaseTemplate) -> Iterator[str]:
    names = [c.name for c in template.components]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            yield f"component {name!r} is declared twice"
        seen.add(name)
        if name in RESERVED_NAMES | RESERVED_STEPS:
            yield f"component name {name!r} is reserved by the deployment pipeline"
    for parameter in template.parameters:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", parameter):
            yield f"parameter name {parameter!r} is not a lowercase identifier"
        if parameter in RESERVED_NAMES or parameter in seen:
            yield (
                f"parameter {parameter!r} clashes with a component or a run parameter of the "
                "deployment pipeline: rename it"
            )
    order = template.deployment_order
    if order is not None and sorted(order) != sorted(names):
        missing = sorted(set(names) - set(order))
        unknown = sorted(set(order) - set(names))
        repeated = sorted({n for n in order if order.count(n) > 1})
        yield (
            "deployment_order must list every component exactly once"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; repeated {repeated}" if repeated else "")
        )
        return
    yield from _reference_problems(template, set(names))


def _reference_problems(template: UseCaseTemplate, names: set[str]) -> Iterator[str]:
    optional = {c.name for c in template.components if not c.required}
    for component in template.components:
        if component.chart is None:
            continue
        where = f"component {component.name!r}"
        try:
            refs = list(references(component.chart.values))
        except TemplateRenderError as exc:
            yield f"{where}: {exc}"
            continue
        for private in sorted(_private_attributes(component.chart.values)):
            yield f"{where} reads the private attribute {private!r}; values read data only"
        for ref in refs:
            text = str(ref)
            if ref.root == "parameters":
                if not ref.path or ref.path[0] not in template.parameters:
                    known = sorted(template.parameters) or "none"
                    yield f"{where} reads {text}: no such parameter (known: {known})"
            elif ref.root == "steps":
                if len(ref.path) < 3 or ref.path[1] != "outputs":
                    yield f"{where} reads {text}: write steps.<component>.outputs.<output>"
                elif ref.path[0] not in names:
                    yield f"{where} reads {text}: no component {ref.path[0]!r}"
                elif ref.path[0] == component.name:
                    yield f"{where} reads its own outputs ({text})"
                elif ref.path[2] not in COMPONENT_OUTPUTS:
                    yield (
                        f"{where} reads {text}: components report "
                        f"{', '.join(sorted(COMPONENT_OUTPUTS))}"
                    )
                elif ref.path[0] in optional and component.required:
                    yield (
                        f"{where} reads {text} but {ref.path[0]!r} is optional and may not be "
                        "deployed: make it required"
                    )
            else:
                yield (
                    f"{where} reads {text}: values may read only parameters.<name> and "
                    "steps.<component>.outputs.<output>"
                )
    order = template.deployment_order
    if order is not None:
        for component in template.components:
            later = {
                name
                for name in component_reads(component)
                if name in names and order.index(name) > order.index(component.name)
            }
            for name in sorted(later):
                yield (
                    f"component {component.name!r} reads the outputs of {name!r}, which is "
                    "not upstream of it in deployment_order"
                )
    else:
        graph = {c.name: sorted(component_reads(c) & names) for c in template.components}
        cycle = find_cycle(graph)
        if cycle:
            yield f"components depend on each other in a cycle: {' -> '.join(cycle)}"


def _private_attributes(value: Any) -> set[str]:
    """Underscore attributes read by the templates in ``value`` (``''.__class__``): the
    sandbox refuses them when rendering, but a template is refused before it is ever used."""
    if isinstance(value, dict):
        return set().union(*(_private_attributes(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_private_attributes(item) for item in value))
    if not isinstance(value, str) or "{" not in value:
        return set()
    try:
        tree = ENV.parse(value)
    except TemplateError:
        return set()  # reported by references() with the parser's message
    found = {node.attr for node in tree.find_all(nodes.Getattr) if node.attr.startswith("_")}
    found |= {
        node.arg.value
        for node in tree.find_all(nodes.Getitem)
        if isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
        and node.arg.value.startswith("_")
    }
    return found


def rewrite_parameters(value: Any) -> Any:
    """Template values with ``parameters.x`` read as the pipeline's ``params.x``.

    The rewrite works on Jinja's own tokens, so only the variable ``parameters`` changes; a
    string literal or an attribute that happens to be called ``parameters`` does not.
    """
    if isinstance(value, dict):
        return {key: rewrite_parameters(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rewrite_parameters(item) for item in value]
    if not isinstance(value, str) or "{{" not in value:
        return value
    try:
        tokens = list(ENV.lex(value))
    except TemplateError as exc:
        raise TemplateRenderError(f"invalid template {value!r}: {exc}") from exc
    out: list[str] = []
    previous = ""
    for _, kind, text in tokens:
        if kind == "name" and text == "parameters" and previous != ".":
            text = "params"
        out.append(text)
        if kind != "whitespace":
            previous = text
    return "".join(out)


def parse_template(raw: Any, source: str) -> UseCaseTemplate:
    """A template from parsed YAML, or :class:`UseCaseTemplateError` listing every problem."""
    if not isinstance(raw, dict):
        raise UseCaseTemplateError(source, ["a use-case template must be a mapping"])
    try:
        return UseCaseTemplate.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = _location(raw, error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{location}: {message}" if location else message)
        raise UseCaseTemplateError(source, problems) from None
    except (UnsafeValuesError, TemplateRenderError) as exc:  # raised outside a validator
        raise UseCaseTemplateError(source, [str(exc)]) from None


def _location(raw: Any, loc: tuple[int | str, ...]) -> str:
    """``components[agent_runtime].chart.values`` rather than ``components.2.chart.values``."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int) and isinstance(node, list):
            named = node[item].get("name") if isinstance(node[item], dict) else None
            parts[-1] += f"[{named}]" if named else f"[{item}]"
            node = node[item]
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def load_template(path: Path) -> UseCaseTemplate:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UseCaseTemplateError(str(path), [f"cannot read template: {exc}"]) from None
    return parse_template(raw, str(path))


def template_files(folder: Path = TEMPLATES_DIR) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def find_template(name_or_path: str, folder: Path = TEMPLATES_DIR) -> UseCaseTemplate:
    """A template by file path or by name among ``usecases/``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_template(path)
    for candidate in template_files(folder):
        try:
            raw = yaml.safe_load(candidate.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(raw, dict) and raw.get("name") == name_or_path:
            return parse_template(raw, str(candidate))
    known = ", ".join(sorted(p.stem for p in template_files(folder))) or "none"
    raise KeyError(f"no use-case template named {name_or_path!r} in {folder} (known: {known})")
