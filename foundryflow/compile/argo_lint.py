"""Static checks for the Argo documents we render: the official JSON schema plus a semantic lint.

The schema (``shared/schemas/argo-workflows.schema.json``, see its README) catches structural
mistakes: unknown fields, wrong types, bad enum values. It knows nothing about meaning, so
``lint`` re-implements the parts of Argo's ``workflow/validate/validate.go`` that our compiler
can get wrong: template and task references, DAG dependencies and cycles, ``{{...}}``
variables, names Kubernetes will refuse, and cron schedules. Both run without a cluster, so
CI rejects a document before ``argo submit`` would.

Every lint message reads ``Kind/name: location: problem`` where the location is
Argo-style (``templates.main.tasks.load.arguments.parameters[0].value``).
"""

from __future__ import annotations

import json
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from foundryflow.config import REPO_ROOT

Document = Mapping[str, Any]

DEFAULT_SCHEMA_PATH = REPO_ROOT.parent / "shared" / "schemas" / "argo-workflows.schema.json"
"""The pinned schema next to the repository; env ``FOUNDRYFLOW_ARGO_SCHEMA`` overrides it."""

SCHEMA_PATH_ENV = "FOUNDRYFLOW_ARGO_SCHEMA"

KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
"""The kinds we render; ``WorkflowEventBinding`` is in the schema but never produced by us."""

_DEFINITION_PREFIX = "io.argoproj.workflow.v1alpha1."
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_MAX_MESSAGE = 300


# --------------------------------------------------------------------------- schema


class ArgoSchema:
    """The patched Argo schema with one compiled validator per kind.

    Validating against a per-kind ``$ref`` wrapper instead of the root ``oneOf`` makes jsonschema
    report the real culprit rather than "is not valid under any of the given schemas".
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._id: str = schema["$id"]
        resource = Resource.from_contents(schema, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(self._id, resource)
        self._validators: dict[str, Draft202012Validator] = {}

    def validate(self, doc: Document) -> list[str]:
        """Schema errors of ``doc`` as ``path: message``, sorted by path (empty when valid)."""
        kind = doc.get("kind")
        if kind not in KINDS:
            return [f"kind: {kind!r} is not one of {list(KINDS)}"]
        errors = self._validator(kind).iter_errors(doc)
        return sorted(_format_schema_error(error) for error in errors)

    def _validator(self, kind: str) -> Draft202012Validator:
        """Build each kind's validator once: compiling the $ref graph dominates a cold call."""
        if kind not in self._validators:
            wrapper = {"$ref": f"{self._id}#/definitions/{_DEFINITION_PREFIX}{kind}"}
            self._validators[kind] = Draft202012Validator(wrapper, registry=self._registry)
        return self._validators[kind]


def load_schema(path: Path | None = None) -> ArgoSchema:
    """The patched schema at ``path``, else env ``FOUNDRYFLOW_ARGO_SCHEMA``, else the pinned file.

    Cached per resolved path: parsing 600 KB of JSON on every call would dominate test time.
    """
    chosen = path or Path(os.environ.get(SCHEMA_PATH_ENV) or DEFAULT_SCHEMA_PATH)
    return _load_schema(chosen.resolve())


@lru_cache(maxsize=4)
def _load_schema(path: Path) -> ArgoSchema:
    """Read and patch the schema once per path."""
    schema = json.loads(path.read_text(encoding="utf-8"))
    _patch_schema(schema)
    return ArgoSchema(schema)


def _patch_schema(schema: dict[str, Any]) -> None:
    """Close the two gaps the schema README documents, in place.

    IntOrString is typed ``string`` only, so the integers Hera emits (``retryStrategy.limit: 3``)
    would be rejected; and without ``additionalProperties: false`` a typo such as ``contianer``
    passes silently, whereas ``argo lint --strict`` rejects unknown fields.
    """
    definitions: dict[str, dict[str, Any]] = schema["definitions"]
    definitions[_INT_OR_STRING] = {"type": ["string", "integer"]}
    for definition in definitions.values():
        if "properties" in definition:
            definition["additionalProperties"] = False


def _format_schema_error(error: ValidationError) -> str:
    """``spec.templates[2].container.imagePullPolicy: <message>``, capped for huge instances."""
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return f"{_json_path(error.absolute_path) or '<root>'}: {message}"


def _json_path(parts: Iterable[str | int]) -> str:
    """Render a jsonschema path the way people write it: ``a.b[0].c``."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


# --------------------------------------------------------------------------- document lint

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_FIELD_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
_MAX_FIELD_NAME = 128
_MAX_OBJECT_NAME = 63
# Argo appends "-<unix time>" (11 chars) to the Workflows a CronWorkflow creates.
_MAX_CRON_NAME = 52
# Kubernetes appends 5 random characters to generateName.
_MAX_GENERATE_NAME = 58
_TEMPLATE_TYPES = (
    "container",
    "containerSet",
    "script",
    "resource",
    "dag",
    "steps",
    "suspend",
    "data",
    "http",
    "plugin",
)
_POD_TYPES = frozenset({"container", "containerSet", "script", "resource", "data"})
# Fields the schema types as bare strings although Argo/Kubernetes accept only these values.
_PULL_POLICIES = frozenset({"Always", "IfNotPresent", "Never"})
_TEMPLATE_ENUMS = {
    "retryStrategy.retryPolicy": frozenset({"Always", "OnFailure", "OnError", "OnTransientError"}),
    "container.imagePullPolicy": _PULL_POLICIES,
    "script.imagePullPolicy": _PULL_POLICIES,
    "resource.action": frozenset({"get", "create", "apply", "delete", "replace", "patch"}),
}
_SPEC_ENUMS = {
    "podGC.strategy": frozenset(
        {"OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"}
    ),
}
_CRON_ENUMS = {"concurrencyPolicy": frozenset({"Allow", "Forbid", "Replace"})}


def lint(doc: Document) -> list[str]:
    """Semantic problems of one Argo document, each ``Kind/name: location: problem``.

    Tolerates documents that fail the schema (wrong types are skipped, not crashed on), so
    ``check_documents`` can report both kinds of problems in one pass.
    """
    label = _document_label(doc)
    kind = doc.get("kind")
    if kind not in KINDS:
        return [f"{label}: kind: {kind!r} is not one of {list(KINDS)}"]
    spec = _mapping(doc.get("spec"))
    problems = list(_lint_metadata(kind, _mapping(doc.get("metadata"))))
    if kind == "CronWorkflow":
        problems += _lint_cron_spec(spec)
        spec = _mapping(spec.get("workflowSpec"))
    problems += _lint_workflow_spec(kind, spec)
    return [f"{label}: {problem}" for problem in problems]


def check_documents(docs: Iterable[Document], schema: ArgoSchema) -> list[str]:
    """Schema errors and lint problems of every document, all prefixed ``Kind/name:``."""
    problems: list[str] = []
    for doc in docs:
        label = _document_label(doc)
        problems += [f"{label}: {error}" for error in schema.validate(doc)]
        problems += lint(doc)
    return problems


def _document_label(doc: Document) -> str:
    """``Kind/name`` so a message from a multi-document YAML file points at the right one."""
    metadata = _mapping(doc.get("metadata"))
    name = metadata.get("name") or metadata.get("generateName") or "<unnamed>"
    return f"{doc.get('kind') or '<no kind>'}/{name}"


def _enum_problems(
    obj: Mapping[str, Any], enums: Mapping[str, frozenset[str]], location: str
) -> Iterator[str]:
    """Values outside a closed set that the schema leaves as free strings (Argo would reject them
    at submit or run time); a ``{{...}}`` value is decided at run time and is left alone."""
    for dotted, allowed in enums.items():
        value: Any = obj
        for key in dotted.split("."):
            value = _mapping(value).get(key)
        if value is not None and "{{" not in str(value) and value not in allowed:
            yield f"{location}.{dotted}: {value!r} is not one of {sorted(allowed)}"


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else empty: lint must survive schema-invalid shapes."""
    return value if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    """The mapping items of ``value`` if it is a list, for the same reason as ``_mapping``."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _names(items: Any) -> frozenset[str]:
    """The ``name`` of each item of a list such as ``inputs.parameters``."""
    return frozenset(str(item["name"]) for item in _mappings(items) if "name" in item)


# ------------------------------------------------------------------ metadata and cron


def _lint_metadata(kind: str, metadata: Mapping[str, Any]) -> Iterator[str]:
    """Object names Kubernetes and Argo accept: DNS-1123 subdomain, Argo's length caps."""
    name = metadata.get("name")
    if kind == "Workflow" and not name and metadata.get("generateName"):
        yield from _lint_generate_name(str(metadata["generateName"]))
        return
    if not name:
        yield "metadata.name: is required"
        return
    name = str(name)
    limit = _MAX_CRON_NAME if kind == "CronWorkflow" else _MAX_OBJECT_NAME
    if len(name) > limit:
        yield f"metadata.name: {name!r} is longer than {limit} characters ({len(name)})"
    if not _DNS1123_SUBDOMAIN.fullmatch(name):
        yield f"metadata.name: {name!r} is not a valid DNS-1123 subdomain (a-z, 0-9, '-', '.')"


def _lint_generate_name(prefix: str) -> Iterator[str]:
    """A generateName is a name prefix, so (as Kubernetes does) a trailing '-' is allowed."""
    if len(prefix) > _MAX_GENERATE_NAME:
        yield f"metadata.generateName: {prefix!r} is longer than {_MAX_GENERATE_NAME} characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(prefix[:-1] + "a" if prefix.endswith("-") else prefix):
        yield f"metadata.generateName: {prefix!r} is not a valid DNS-1123 subdomain prefix"


def _lint_cron_spec(spec: Mapping[str, Any]) -> Iterator[str]:
    """What Argo's CronWorkflow validation checks before looking at the workflow spec."""
    schedules = spec.get("schedules")
    if not isinstance(schedules, list) or not schedules:
        yield "spec.schedules: at least one cron schedule is required"
    else:
        for index, schedule in enumerate(schedules):
            for problem in _cron_problems(str(schedule)):
                yield f"spec.schedules[{index}]: {schedule!r} is not valid cron: {problem}"
    if "timezone" in spec:
        yield from _lint_timezone(spec["timezone"])
    yield from _enum_problems(spec, _CRON_ENUMS, "spec")


def _lint_timezone(timezone: Any) -> Iterator[str]:
    """Argo refuses a timezone Go's ``time.LoadLocation`` cannot load; the IANA database agrees."""
    if not isinstance(timezone, str) or not timezone.strip():
        yield "spec.timezone: must be a non-empty IANA timezone name when set"
        return
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        yield f"spec.timezone: {timezone!r} is not a known IANA timezone"


_CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_CRON_TZ_PREFIX = re.compile(r"(?:CRON_TZ|TZ)=\S+\s+")
_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _CronField:
    """One of the five fields of a standard cron line and the values it accepts."""

    name: str
    low: int
    high: int
    aliases: tuple[str, ...] = ()

    def value(self, text: str) -> int | None:
        """The number ``text`` stands for (digits or a JAN/SUN-style alias), None if neither."""
        if text.isdigit():
            return int(text)
        if text.lower() in self.aliases:
            return self.aliases.index(text.lower()) + self.low
        return None


_CRON_FIELDS = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day of month", 1, 31),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day of week", 0, 6, _WEEKDAYS),
)


def _cron_problems(schedule: str) -> list[str]:
    """Why ``schedule`` is not what Argo's parser (robfig/cron ``ParseStandard``) accepts."""
    line = _CRON_TZ_PREFIX.sub("", schedule.strip(), count=1)
    if line.startswith("@every "):
        duration = line.removeprefix("@every ").strip()
        return [] if _GO_DURATION.fullmatch(duration) else [f"bad duration {duration!r}"]
    if line.startswith("@"):
        return [] if line in _CRON_MACROS else [f"unknown descriptor {line!r}"]
    fields = line.split()
    if len(fields) != len(_CRON_FIELDS):
        return [
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        ]
    return [
        problem
        for text, field in zip(fields, _CRON_FIELDS, strict=True)
        for part in text.split(",")
        for problem in _cron_part_problems(part, field)
    ]


def _cron_part_problems(part: str, field: _CronField) -> list[str]:
    """Check one comma-separated item: ``*``, ``?``, ``n``, ``a-b``, each optionally ``/step``."""
    span, slash, step = part.partition("/")
    problems = []
    if slash and not (step.isdigit() and int(step) > 0):
        problems.append(f"{field.name}: step {step!r} in {part!r} must be a positive integer")
    if span in ("*", "?"):
        return problems
    bounds = span.split("-")
    values = [field.value(bound) for bound in bounds]
    if len(bounds) > 2 or None in values:
        return [*problems, f"{field.name}: {part!r} is not a number, range or '*'"]
    numbers = [value for value in values if value is not None]
    if any(not field.low <= number <= field.high for number in numbers):
        problems.append(f"{field.name}: {part!r} is outside {field.low}-{field.high}")
    elif numbers != sorted(numbers):
        problems.append(f"{field.name}: range {span!r} runs backwards")
    return problems


# ------------------------------------------------------------------ workflow spec


@dataclass(frozen=True)
class _DocContext:
    """What every template of one document may refer to."""

    templates: Mapping[str, Mapping[str, Any]]
    workflow_parameters: frozenset[str]
    global_outputs: frozenset[str]
    """``parameters.X`` / ``artifacts.X`` for each output declaring ``globalName: X``."""
    dynamic_global_outputs: bool
    """Some ``globalName`` is itself a ``{{...}}`` variable: any workflow output may exist."""


def _lint_workflow_spec(kind: str, spec: Mapping[str, Any]) -> Iterator[str]:
    """Template names, entry points and each template of a (Cron)Workflow(Template) spec."""
    templates = _mappings(spec.get("templates"))
    context = _doc_context(spec, templates)
    yield from _lint_template_names(templates)
    has_template_ref = "workflowTemplateRef" in spec
    if has_template_ref and templates:
        yield "spec.templates: must be empty when spec.workflowTemplateRef is set"
    if not has_template_ref:
        yield from _lint_entry_points(kind, spec, context)
    yield from _enum_problems(spec, _SPEC_ENUMS, "spec")
    for template in templates:
        yield from _lint_template(template, context)


def _doc_context(spec: Mapping[str, Any], templates: list[Mapping[str, Any]]) -> _DocContext:
    """Index templates by name and collect the names ``{{workflow.*}}`` variables may use."""
    global_names = [
        (section, str(output["globalName"]))
        for template in templates
        for section in ("parameters", "artifacts")
        for output in _mappings(_mapping(template.get("outputs")).get(section))
        if output.get("globalName")
    ]
    by_name: dict[str, Mapping[str, Any]] = {}
    for template in templates:
        by_name.setdefault(str(template.get("name")), template)
    return _DocContext(
        templates=by_name,
        workflow_parameters=_names(_mapping(spec.get("arguments")).get("parameters")),
        global_outputs=frozenset(f"{section}.{name}" for section, name in global_names),
        dynamic_global_outputs=any("{{" in name for _, name in global_names),
    )


def _lint_template_names(templates: list[Mapping[str, Any]]) -> Iterator[str]:
    """Template names must be valid field names and unique, or references become ambiguous."""
    seen: set[str] = set()
    for index, template in enumerate(templates):
        name = template.get("name")
        location = f"templates[{index}]"
        problem = _field_name_problem(name, "template")
        if problem:
            yield f"{location}: {problem}"
        elif name in seen:
            yield f"{location}: template name {name!r} is not unique"
        seen.add(str(name))


def _field_name_problem(name: Any, what: str) -> str | None:
    """Argo's rule for template, task and step names (``isValidWorkflowFieldName``)."""
    if not name:
        return f"{what} name is required"
    text = str(name)
    if len(text) > _MAX_FIELD_NAME:
        return f"{what} name {text!r} is longer than {_MAX_FIELD_NAME} characters"
    if not _FIELD_NAME.fullmatch(text):
        return f"{what} name {text!r} is invalid: must match {_FIELD_NAME.pattern}"
    return None


def _lint_entry_points(kind: str, spec: Mapping[str, Any], context: _DocContext) -> Iterator[str]:
    """``entrypoint`` (required except on templates) and ``onExit`` must name a template."""
    entrypoint = spec.get("entrypoint")
    if not entrypoint and kind in ("Workflow", "CronWorkflow"):
        yield "spec.entrypoint: is required"
    for field_name, target in (("entrypoint", entrypoint), ("onExit", spec.get("onExit"))):
        if target and target not in context.templates:
            yield f"spec.{field_name}: references unknown template {target!r}"


def _lint_template(template: Mapping[str, Any], context: _DocContext) -> Iterator[str]:
    """One template: exactly one type, then the DAG/steps rules or a variable scan."""
    location = f"templates.{template.get('name')}"
    types = [name for name in _TEMPLATE_TYPES if template.get(name) is not None]
    if len(types) != 1:
        found = ", ".join(types) or "none"
        expected = ", ".join(_TEMPLATE_TYPES)
        yield f"{location}: needs exactly one template type of {expected} (found {found})"
    yield from _enum_problems(template, _TEMPLATE_ENUMS, location)
    scope = _Scope(
        doc=context,
        template=template,
        inputs=_names(_mapping(template.get("inputs")).get("parameters")),
        artifacts=_names(_mapping(template.get("inputs")).get("artifacts")),
    )
    if "dag" in types:
        yield from _lint_dag(template, location, scope)
    elif "steps" in types:
        yield from _lint_steps(template, location, scope)
    else:
        yield from _lint_variables(template, location, scope)


# ------------------------------------------------------------------ DAG and steps

_DEPENDS_TOKEN = re.compile(r"\s*(&&|\|\||!|\(|\)|[a-zA-Z0-9][-a-zA-Z0-9]*(?:\.[a-zA-Z]+)?)")
_DEPENDS_RESULTS = frozenset(
    {
        "Succeeded",
        "Failed",
        "Errored",
        "Skipped",
        "Omitted",
        "Daemoned",
        "AnySucceeded",
        "AllFailed",
    }
)


def _lint_dag(template: Mapping[str, Any], location: str, scope: _Scope) -> Iterator[str]:
    """Task names and references, dependency graph, then variables with per-task scope."""
    dag = _mapping(template.get("dag"))
    tasks = _mappings(dag.get("tasks"))
    if not tasks:
        yield f"{location}.dag.tasks: a DAG needs at least one task"
    yield from _lint_nodes(tasks, location, "task", lambda index, name: f"tasks.{name}", scope.doc)
    graph: dict[str, list[str]] = {}
    for task in tasks:
        name = str(task.get("name"))
        upstream, problems = _task_dependencies(task)
        graph.setdefault(name, upstream)
        yield from (f"{location}.tasks.{name}: {problem}" for problem in problems)
    yield from _lint_dependency_style(tasks, location)
    for name, upstream in graph.items():
        for dependency in upstream:
            if dependency not in graph:
                yield f"{location}.tasks.{name}: depends on unknown task {dependency!r}"
    yield from (f"{location}: dependency cycle {' -> '.join(cycle)}" for cycle in _cycles(graph))
    nodes = {str(task.get("name")): task for task in tasks}
    outer = {key: value for key, value in template.items() if key != "dag"}
    outer["dag"] = {key: value for key, value in dag.items() if key != "tasks"}
    dag_scope = replace(scope, node_kind="tasks", nodes=nodes, visible=frozenset(nodes))
    yield from _lint_variables(outer, location, dag_scope)
    for name, task in nodes.items():
        task_scope = _node_scope(dag_scope, task, _ancestors(graph, name))
        yield from _lint_node_variables(task, f"{location}.tasks.{name}", task_scope)


def _lint_steps(template: Mapping[str, Any], location: str, scope: _Scope) -> Iterator[str]:
    """Step names and references, then variables: a step sees only earlier step groups."""
    raw_groups = template.get("steps")
    groups = (
        [group for group in raw_groups if isinstance(group, list)]
        if isinstance(raw_groups, list)
        else []
    )
    located = [(index, step) for index, group in enumerate(groups) for step in _mappings(group)]
    yield from _lint_nodes(
        [step for _, step in located],
        location,
        "step",
        lambda position, name: f"steps[{located[position][0]}].{name}",
        scope.doc,
    )
    nodes = {str(step.get("name")): step for _, step in located}
    outer = {key: value for key, value in template.items() if key != "steps"}
    steps_scope = replace(scope, node_kind="steps", nodes=nodes, visible=frozenset(nodes))
    yield from _lint_variables(outer, location, steps_scope)
    earlier: set[str] = set()
    for index, group in enumerate(groups):
        for step in _mappings(group):
            step_scope = _node_scope(steps_scope, step, frozenset(earlier))
            yield from _lint_node_variables(
                step, f"{location}.steps[{index}].{step.get('name')}", step_scope
            )
        earlier |= _names(group)


def _lint_nodes(
    nodes: list[Mapping[str, Any]],
    location: str,
    what: str,
    where: Callable[[int, Any], str],
    context: _DocContext,
) -> Iterator[str]:
    """Shared task/step rules: valid unique names, exactly one way to name the template to run.

    ``where(position, name)`` renders the node's location, which differs for tasks and steps.
    """
    seen: set[str] = set()
    for position, node in enumerate(nodes):
        name = node.get("name")
        node_location = f"{location}.{where(position, name)}"
        problem = _field_name_problem(name, what)
        if problem:
            yield f"{node_location}: {problem}"
        elif name in seen:
            yield f"{node_location}: {what} name {name!r} is not unique in {location}"
        seen.add(str(name))
        yield from (f"{node_location}: {p}" for p in _template_reference_problems(node, context))


def _template_reference_problems(node: Mapping[str, Any], context: _DocContext) -> Iterator[str]:
    """A task/step runs exactly one of ``template`` (must exist), ``templateRef`` or ``inline``.

    ``templateRef`` points into another document, which a single-document lint cannot see.
    """
    given = [key for key in ("template", "templateRef", "inline") if node.get(key)]
    if len(given) != 1:
        found = ", ".join(given) or "none"
        yield f"needs exactly one of template, templateRef, inline (found {found})"
    target = node.get("template")
    if target and target not in context.templates:
        yield f"references unknown template {target!r}"


def _task_dependencies(task: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Upstream task names from ``dependencies`` and ``depends``, plus parse errors."""
    upstream = [str(name) for name in task.get("dependencies") or []]
    problems: list[str] = []
    if task.get("depends"):
        names, problems = _parse_depends(str(task["depends"]))
        upstream += names
    return list(dict.fromkeys(upstream)), problems


def _parse_depends(expression: str) -> tuple[list[str], list[str]]:
    """Task names in a ``depends`` expression such as ``a.Succeeded && (b || !c.Failed)``.

    A tiny recursive-descent parser over ``term := '!' term | '(' expr ')' | task[.Result]`` and
    ``expr := term (('&&' | '||') term)*`` so malformed expressions are reported, not guessed at.
    """
    tokens, problems = _depends_tokens(expression)
    names: list[str] = []
    if not problems:
        end = _parse_depends_expr(tokens, 0, names, problems)
        if end < len(tokens) and not problems:
            problems.append(f"unexpected {tokens[end]!r}")
    return names, [f"depends {expression!r}: {problem}" for problem in problems]


def _depends_tokens(expression: str) -> tuple[list[str], list[str]]:
    """Split a ``depends`` expression into operators and ``task[.Result]`` tokens."""
    tokens: list[str] = []
    position, end = 0, len(expression.rstrip())
    while position < end:
        match = _DEPENDS_TOKEN.match(expression, position)
        if not match:
            return tokens, [f"unexpected text at {expression[position:end]!r}"]
        tokens.append(match.group(1))
        position = match.end()
    return tokens, []


def _parse_depends_expr(
    tokens: list[str], index: int, names: list[str], problems: list[str]
) -> int:
    """Parse ``term (op term)*`` from ``index``; returns the index after it."""
    index = _parse_depends_term(tokens, index, names, problems)
    while not problems and index < len(tokens) and tokens[index] in ("&&", "||"):
        index = _parse_depends_term(tokens, index + 1, names, problems)
    return index


def _parse_depends_term(
    tokens: list[str], index: int, names: list[str], problems: list[str]
) -> int:
    """Parse one operand: negation, parenthesised expression or ``task[.Result]``."""
    token = tokens[index] if index < len(tokens) else None
    if token == "!":
        return _parse_depends_term(tokens, index + 1, names, problems)
    if token == "(":
        index = _parse_depends_expr(tokens, index + 1, names, problems)
        if not problems and (index >= len(tokens) or tokens[index] != ")"):
            problems.append("missing ')'")
        return index + 1
    if token is None or token in ("&&", "||", ")"):
        problems.append("expected a task name" + (f" before {token!r}" if token else " at the end"))
        return index
    name, _, result = token.partition(".")
    if result and result not in _DEPENDS_RESULTS:
        problems.append(
            f"unknown result {result!r} for task {name!r} (use {sorted(_DEPENDS_RESULTS)})"
        )
    names.append(name)
    return index + 1


def _lint_dependency_style(tasks: list[Mapping[str, Any]], location: str) -> Iterator[str]:
    """Argo rejects mixing ``depends`` with ``dependencies`` in one DAG, and digit-led task names
    once either is used (they would read as numbers in the expression)."""
    uses_depends = any(task.get("depends") for task in tasks)
    uses_dependencies = any(task.get("dependencies") for task in tasks)
    if uses_depends and uses_dependencies:
        yield f"{location}: cannot use both 'depends' and 'dependencies' in the same DAG"
    if uses_depends or uses_dependencies:
        for task in tasks:
            name = str(task.get("name") or "")
            if name[:1].isdigit():
                yield (
                    f"{location}.tasks.{name}: task name cannot begin with a digit"
                    " when using depends/dependencies"
                )


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Every cycle closed by a DFS back edge, as ``[a, b, a]`` (a depends on b depends on a)."""
    state: dict[str, str] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = "active"
        path.append(node)
        for upstream in graph.get(node, []):
            if state.get(upstream) == "active":
                cycles.append([*path[path.index(upstream) :], upstream])
            elif upstream in graph and upstream not in state:
                visit(upstream)
        path.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)
    return cycles


def _ancestors(graph: Mapping[str, list[str]], name: str) -> frozenset[str]:
    """Tasks ``name`` depends on directly or transitively; terminates on cycles."""
    found: set[str] = set()
    pending = list(graph.get(name, []))
    while pending:
        upstream = pending.pop()
        if upstream not in found and upstream != name:
            found.add(upstream)
            pending.extend(graph.get(upstream, []))
    return frozenset(found)


# ------------------------------------------------------------------ variables

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NODE_ATTRIBUTE = re.compile(
    r"id|ip|status|exitCode|startedAt|finishedAt|hostNodeName|outputs\.result"
    r"|outputs\.parameters(?:\.(?P<parameter>[^.]+))?|outputs\.artifacts\.[^.]+"
)
_WORKFLOW_SCALARS = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "serviceAccountName",
        "mainEntrypoint",
        "status",
        "failures",
        "duration",
        "priority",
        "scheduledTime",
        "creationTimestamp",
        "parameters",
        "labels",
        "annotations",
    }
)
_LAST_RETRY = frozenset({"exitCode", "status", "duration", "message"})


@dataclass(frozen=True)
class _Scope:
    """The variables one string may use: its template, and for a task/step its upstream nodes."""

    doc: _DocContext
    template: Mapping[str, Any]
    inputs: frozenset[str]
    artifacts: frozenset[str]
    node_kind: str | None = None
    """``tasks`` in a DAG template, ``steps`` in a steps template, else None."""
    nodes: Mapping[str, Mapping[str, Any]] | None = None
    visible: frozenset[str] = frozenset()
    """Nodes this string may read: all for template-level fields, upstream ones inside a node."""
    current: str | None = None
    in_loop: bool = False


def _node_scope(parent: _Scope, node: Mapping[str, Any], upstream: frozenset[str]) -> _Scope:
    """Scope inside one task/step: upstream outputs, loop ``item``, an inline template's inputs."""
    inline = _mapping(node.get("inline"))
    return replace(
        parent,
        visible=upstream,
        current=str(node.get("name")),
        in_loop=any(node.get(key) for key in ("withItems", "withParam", "withSequence")),
        inputs=parent.inputs | _names(_mapping(inline.get("inputs")).get("parameters")),
    )


def _lint_node_variables(node: Mapping[str, Any], location: str, scope: _Scope) -> Iterator[str]:
    """A node's own lifecycle hooks run after it, so they alone may read the node itself."""
    body = {key: value for key, value in node.items() if key != "hooks"}
    yield from _lint_variables(body, location, scope)
    if "hooks" in node and scope.current is not None:
        hook_scope = replace(scope, visible=scope.visible | {scope.current})
        yield from _lint_variables(node["hooks"], f"{location}.hooks", hook_scope)


def _lint_variables(value: Any, location: str, scope: _Scope) -> Iterator[str]:
    """Check every ``{{...}}`` in every string under ``value``; ``{{=expr}}`` is left to Argo."""
    for path, text in _strings(value, ""):
        for raw in _TAG.findall(text):
            tag = raw.strip()
            if tag.startswith("="):
                continue
            problem = _variable_problem(tag, scope)
            if problem:
                where = f"{location}.{path}" if path else location
                yield f"{where}: {{{{{tag}}}}}: {problem}"


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string leaf with its ``a.b[0]`` path, keys excluded."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _variable_problem(tag: str, scope: _Scope) -> str | None:
    """Why ``tag`` (``inputs.parameters.x``) cannot resolve in ``scope``, or None if it can."""
    root, _, rest = tag.partition(".")
    if root == "workflow":
        return _workflow_variable_problem(rest, scope.doc)
    if root == "inputs":
        return _inputs_variable_problem(rest, scope)
    if root in ("tasks", "steps"):
        return _node_variable_problem(root, rest, scope)
    if root == "item" and not scope.in_loop:
        return "only valid in a task or step with withItems, withParam or withSequence"
    if root in ("retries", "lastRetry"):
        return _retry_variable_problem(root, rest, scope.template)
    if tag == "pod.name":
        pod = any(scope.template.get(kind) is not None for kind in _POD_TYPES)
        return None if pod else "only valid in container, script, resource and data templates"
    if root in ("item", "outputs") or tag == "node.name":
        return None
    return "unknown variable (known: workflow, inputs, outputs, tasks, steps, item, pod, retries)"


def _workflow_variable_problem(rest: str, doc: _DocContext) -> str | None:
    """``workflow.*`` globals; parameters must be declared, outputs must have a globalName."""
    section, _, name = rest.partition(".")
    if not name:
        return None if section in _WORKFLOW_SCALARS else "unknown workflow variable"
    if section in ("creationTimestamp", "labels", "annotations"):
        return None
    if section == "parameters":
        if name == "json" or name in doc.workflow_parameters:
            return None
        return f"{name!r} is not declared in spec.arguments.parameters"
    if section == "outputs":
        if name in doc.global_outputs or doc.dynamic_global_outputs:
            return None
        return f"no template output declares globalName {name.partition('.')[2]!r}"
    return "unknown workflow variable"


def _inputs_variable_problem(rest: str, scope: _Scope) -> str | None:
    """``inputs.parameters.X`` / ``inputs.artifacts.X[.path]`` must be declared by this template."""
    template_name = scope.template.get("name")
    section, _, name = rest.partition(".")
    if section == "parameters" and not name:
        return None if scope.inputs else f"template {template_name!r} declares no input parameters"
    if section == "parameters":
        if name in scope.inputs:
            return None
        return f"{name!r} is not an input parameter of template {template_name!r}"
    if section == "artifacts" and name:
        artifact = name.removesuffix(".path")
        if artifact in scope.artifacts:
            return None
        return f"{artifact!r} is not an input artifact of template {template_name!r}"
    return "unknown inputs variable"


def _node_variable_problem(kind: str, rest: str, scope: _Scope) -> str | None:
    """``tasks.X.*`` / ``steps.X.*``: X must exist and run before the string is evaluated."""
    singular = kind[:-1]
    if scope.node_kind != kind or scope.nodes is None:
        return f"{kind}.* is only valid inside a {'DAG' if kind == 'tasks' else 'steps'} template"
    if rest == "name":
        return None
    name, _, attribute = rest.partition(".")
    if name not in scope.nodes:
        return f"unknown {singular} {name!r}"
    if name not in scope.visible:
        if kind == "tasks":
            return f"task {name!r} is not upstream of {scope.current!r} (add it to depends)"
        return f"step {name!r} does not run in an earlier step group than {scope.current!r}"
    match = _NODE_ATTRIBUTE.fullmatch(attribute)
    if not match:
        return f"unknown {singular} attribute {attribute!r}"
    parameter = match.group("parameter")
    outputs = _declared_outputs(scope.nodes[name], scope.doc)
    if parameter and outputs is not None and parameter not in outputs:
        return f"{singular} {name!r} has no output parameter {parameter!r}"
    return None


def _declared_outputs(node: Mapping[str, Any], doc: _DocContext) -> frozenset[str] | None:
    """Output parameter names of the template a node runs; None when it lives elsewhere."""
    template = _mapping(node.get("inline")) or doc.templates.get(str(node.get("template")))
    if not template:
        return None
    return _names(_mapping(template.get("outputs")).get("parameters"))


def _retry_variable_problem(root: str, rest: str, template: Mapping[str, Any]) -> str | None:
    """``{{retries}}`` and ``{{lastRetry.*}}`` exist only in templates with a retryStrategy."""
    if root == "retries" and rest:
        return "unknown retry variable"
    if root == "lastRetry" and rest not in _LAST_RETRY:
        return f"unknown retry variable (use lastRetry.{{{','.join(sorted(_LAST_RETRY))}}})"
    if template.get("retryStrategy") is None:
        return f"template {template.get('name')!r} has no retryStrategy"
    return None
