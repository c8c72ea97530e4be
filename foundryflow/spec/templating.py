"""The expression language of pipeline specs: ``{{ params.x }}``, ``{{ steps.a.outputs.b }}``.

Templates come from spec files and, through parameters, from whoever triggers a run, so
they are rendered in Jinja's *immutable sandbox* with three extra fences:

* statements (``{% ... %}``) are refused: a spec value is an expression, and loops are
  the cheapest way to burn a worker;
* arithmetic that could build huge values (``'a' * 10**9``, ``9 ** 9 ** 9``) is bounded;
* undefined names raise, unless the ``default`` filter supplies a value.

A value that is exactly one ``{{ expression }}`` keeps its native type (a list parameter
stays a list, a boolean stays a boolean); anything else renders to a string.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

ROOTS = frozenset({"params", "steps", "execution", "item"})
"""Names a template may start from; anything else is a spec error."""

MAX_SEQUENCE = 1_000_000
"""Longest string or list that ``*`` / ``+`` may produce inside a template."""
MAX_EXPONENT = 64

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class TemplateRenderError(ValueError):
    """A template could not be rendered; the message says which and why."""


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also bounds the size of values built by arithmetic."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        return _bounded_call(self, context, obj, *args, **kwargs)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            return operator.pow(left, right)
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_SEQUENCE:
                    raise SecurityError(f"result longer than {MAX_SEQUENCE} items")
            return operator.mul(left, right)
        result = operator.add(left, right)
        if isinstance(result, str | list | tuple) and len(result) > MAX_SEQUENCE:
            raise SecurityError(f"result longer than {MAX_SEQUENCE} items")
        return result


class _StrictChainableUndefined(ChainableUndefined, StrictUndefined):
    """Missing values may be walked through (``steps.x.outputs.y | default(none)``) but
    raise as soon as they are used, so a typo never renders as an empty string."""


SAFE_FILTERS = frozenset(
    {
        "abs",
        "batch",
        "capitalize",
        "count",
        "d",
        "default",
        "dictsort",
        "first",
        "float",
        "int",
        "items",
        "join",
        "last",
        "length",
        "list",
        "lower",
        "map",
        "max",
        "min",
        "reject",
        "rejectattr",
        "replace",
        "reverse",
        "round",
        "select",
        "selectattr",
        "sort",
        "string",
        "sum",
        "title",
        "tojson",
        "trim",
        "unique",
        "upper",
    }
)
"""Filters whose output size is bounded by their input; ``center(10**9)`` and friends are out."""


def _bounded_call(
    env: ImmutableSandboxedEnvironment, context: Any, obj: Any, *args: Any, **kwargs: Any
) -> Any:
    """Method calls such as ``'a'.center(10**9)`` are bounded by their integer arguments."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and abs(arg) > MAX_SEQUENCE:
            raise SecurityError(f"argument {arg} is larger than {MAX_SEQUENCE}")
    return ImmutableSandboxedEnvironment.call(env, context, obj, *args, **kwargs)


def _make_environment() -> _BoundedSandbox:
    env = _BoundedSandbox(undefined=_StrictChainableUndefined, autoescape=False)
    env.filters = {name: env.filters[name] for name in SAFE_FILTERS}
    # ``none`` reads better than Python's ``None`` in YAML (the seeds use ``default(none)``).
    env.globals = {"none": None, "true": True, "false": False, "range": env.globals["range"]}
    return env


ENV = _make_environment()


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _refuse_statements(source: str) -> None:
    for _, token_type, _ in ENV.lex(source):
        if token_type == "block_begin":
            raise TemplateRenderError(
                f"statements ({{% ... %}}) are not allowed in pipeline templates: {source!r}"
            )


def _parse(source: str) -> nodes.Template:
    try:
        _refuse_statements(source)
        return ENV.parse(source)
    except TemplateError as exc:
        raise TemplateRenderError(f"invalid template {source!r}: {exc}") from exc


@lru_cache(maxsize=4096)
def compile_template(source: str) -> Callable[[Mapping[str, Any]], Any]:
    """Parse and compile once per distinct source; specs repeat the same few templates.

    A single ``{{ expression }}`` compiles to a native-typed expression, anything else
    to a string template. Compilation errors surface as TemplateRenderError.
    """
    _parse(source)  # refuses statements and reports syntax errors uniformly
    try:
        single = _SINGLE_EXPRESSION.match(source)
        if single and "{{" not in single["expr"] and "}}" not in single["expr"]:
            expression = ENV.compile_expression(single["expr"], undefined_to_none=False)

            def evaluate(context: Mapping[str, Any]) -> Any:
                result = expression(**context)
                if isinstance(result, Undefined):
                    str(result)  # raises UndefinedError with Jinja's own message
                return str(result) if isinstance(result, str) else result  # Markup -> str

            return evaluate
        template = ENV.from_string(source)
        return lambda context: template.render(**context)
    except TemplateError as exc:
        raise TemplateRenderError(f"invalid template {source!r}: {exc}") from exc


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template inside ``value`` (recursing into lists and dicts)."""
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if not is_template(value):
        return value
    evaluate = compile_template(value)
    try:
        return evaluate(context)
    except SecurityError as exc:
        raise TemplateRenderError(f"template {value!r} refused by the sandbox: {exc}") from exc
    except TemplateError as exc:
        raise TemplateRenderError(f"template {value!r} failed: {exc}") from exc
    except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateRenderError(f"template {value!r} failed: {exc}") from exc


@dataclass(frozen=True)
class Reference:
    """One name a template reads, e.g. ``steps.deploy.outputs.endpoint_url``.

    ``path`` holds the constant attribute/item names after the root; ``defaulted`` is true
    when the reference sits under a ``default`` filter, so its absence is allowed.
    """

    root: str
    path: tuple[str, ...]
    defaulted: bool

    def __str__(self) -> str:
        return ".".join((self.root, *self.path))


def references(value: Any) -> Iterator[Reference]:
    """Every variable reference in the templates inside ``value``, for static validation."""
    if isinstance(value, dict):
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)
    elif is_template(value):
        yield from _walk(_parse(value), defaulted=False)


def _walk(node: nodes.Node, defaulted: bool) -> Iterator[Reference]:
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        if node.node is not None:
            yield from _walk(node.node, defaulted=True)
        arguments: list[nodes.Node] = [*node.args, *(kw.value for kw in node.kwargs)]
        for child in arguments:
            yield from _walk(child, defaulted)
        return
    chain = _attribute_chain(node)
    if chain is not None:
        root, path = chain
        if root not in ENV.globals:
            yield Reference(root, path, defaulted)
        return
    for child in node.iter_child_nodes():
        yield from _walk(child, defaulted)


def _attribute_chain(node: nodes.Node) -> tuple[str, tuple[str, ...]] | None:
    """``steps.a.outputs['b']`` -> ("steps", ("a", "outputs", "b")); None if not a chain."""
    path: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            path.append(str(node.arg.value))
            node = node.node
        elif isinstance(node, nodes.Name):
            return node.name, tuple(reversed(path))
        else:
            return None
